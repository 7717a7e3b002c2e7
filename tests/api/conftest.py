from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbapi_support
import pytest
import torch
from cbapi_support import FakeEngine, LiveServer, live_server

from circuitboard.config import Settings
from services import postgres_server  # noqa: F401 - started only when a module runs on PostgreSQL

# Two shared CPU cores: the tiny engine must not spread over threads that other work needs.
torch.set_num_threads(1)

# These modules run twice: on SQLite (the default store) and on a real PostgreSQL server (tests/services.py), so
# the graph, subgraph, import, job and restart behaviour is checked on both through the same API. A module-scoped
# fixture of a listed module that makes a server must take `database_backend`, or pytest keeps its SQLite server
# for the PostgreSQL run.
POSTGRES_MODULES = frozenset(
    {
        "test_api_import_export",
        "test_api_jobs",
        "test_api_readable_graphs",
        "test_api_restart",
        "test_api_shared_server",
        "test_api_smoke",
        "test_api_subgraphs",
    }
)


class DatabaseBackend:
    """Which store a module's servers use; `settings` is make_settings on that store."""

    def __init__(self, name: str, postgres: Any = None) -> None:
        self.name = name
        self._postgres = postgres
        self._databases: dict[Path, str] = {}

    def settings(self, tmp: Path, **kw: Any) -> Settings:
        if self._postgres is not None and "database_url" not in kw:
            # One database per temp dir, as SQLite has one file per temp dir: a restart in the same dir finds it.
            key = Path(tmp).resolve()
            if key not in self._databases:
                self._databases[key] = self._postgres.create_database()
            kw["database_url"] = self._databases[key]
        return cbapi_support.make_settings(tmp, **kw)

    def drop_databases(self) -> None:
        for url in self._databases.values():
            self._postgres.drop_database(url)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__ in POSTGRES_MODULES and "database_backend" in metafunc.fixturenames:
        backends = ["sqlite", pytest.param("postgres", marks=pytest.mark.distributed)]
        metafunc.parametrize("database_backend", backends, indirect=True, scope="module")


@pytest.fixture(scope="module", autouse=True)
def database_backend(request: pytest.FixtureRequest) -> Iterator[DatabaseBackend]:
    """SQLite unless the module is parametrised onto PostgreSQL. Module-scoped and autouse, so it is in place
    before a module's own module-scoped servers; a module's direct make_settings calls are routed through it."""
    name = getattr(request, "param", "sqlite")
    if name == "sqlite":
        yield DatabaseBackend(name)
        return
    backend = DatabaseBackend(name, request.getfixturevalue("postgres_server"))
    with pytest.MonkeyPatch.context() as mp:
        if hasattr(request.module, "make_settings"):
            mp.setattr(request.module, "make_settings", backend.settings)
        yield backend
    backend.drop_databases()


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def fake_server(tmp_path, fake_engine, database_backend):
    """A live server whose engine is the FakeEngine test double."""
    with live_server(database_backend.settings(tmp_path), lambda: fake_engine) as server:
        assert server.wait_engine() == "ready"
        yield server


@pytest.fixture
def held_engine() -> FakeEngine:
    """A FakeEngine whose attribute() blocks until `gate` is set (released at teardown)."""
    engine = FakeEngine(hold=True)
    yield engine
    engine.gate.set()


@pytest.fixture
def held_server(tmp_path, held_engine, database_backend) -> LiveServer:
    with live_server(database_backend.settings(tmp_path, max_queue=3), lambda: held_engine) as server:
        assert server.wait_engine() == "ready"
        yield server
        held_engine.gate.set()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory, database_backend):
    """One FakeEngine server for a whole module, for tests that only read or are rejected."""
    engine = FakeEngine()
    settings = database_backend.settings(tmp_path_factory.mktemp("shared"))
    with live_server(settings, lambda: engine) as server:
        assert server.wait_engine() == "ready"
        yield server
