from __future__ import annotations

import pytest
import torch
from cbapi_support import FakeEngine, LiveServer, live_server, make_settings

# Two shared CPU cores: the tiny engine must not spread over threads that other work needs.
torch.set_num_threads(1)


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def fake_server(tmp_path, fake_engine):
    """A live server whose engine is the FakeEngine test double."""
    with live_server(make_settings(tmp_path), lambda: fake_engine) as server:
        assert server.wait_engine() == "ready"
        yield server


@pytest.fixture
def held_engine() -> FakeEngine:
    """A FakeEngine whose attribute() blocks until `gate` is set (released at teardown)."""
    engine = FakeEngine(hold=True)
    yield engine
    engine.gate.set()


@pytest.fixture
def held_server(tmp_path, held_engine) -> LiveServer:
    with live_server(make_settings(tmp_path, max_queue=3), lambda: held_engine) as server:
        assert server.wait_engine() == "ready"
        yield server
        held_engine.gate.set()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """One FakeEngine server for a whole module, for tests that only read or are rejected."""
    engine = FakeEngine()
    with live_server(make_settings(tmp_path_factory.mktemp("shared")), lambda: engine) as server:
        assert server.wait_engine() == "ready"
        yield server
