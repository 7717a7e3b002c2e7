"""The store on a real PostgreSQL server: Alembic from empty to head and back, concurrent startups, idempotent
writes under racing threads, graph blobs as bytea."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, select, text

from circuitboard.store import Store
from circuitboard.store.db import make_engine, normalise_url
from circuitboard.store.migrate import MIGRATIONS_DIR, downgrade, head_revision, upgrade
from circuitboard.store.models import Base, GraphRow

pytestmark = pytest.mark.distributed

GRAPH: dict[str, Any] = {"metadata": {"prompt_tokens": ["a"]}, "nodes": [{"node_id": "E_1_0"}], "links": []}


def _race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run fn(i) in n threads released together; their results (an exception counts as a result)."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - reported to the test, which fails on it
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_alembic_from_empty_to_head_down_and_up(postgres_url):
    head = head_revision()
    engine = make_engine(postgres_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == head
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            blob_type = conn.execute(
                text("SELECT data_type FROM information_schema.columns WHERE table_name = :t AND column_name = :c"),
                {"t": "graphs", "c": "data"},
            ).scalar()
        assert blob_type == "bytea"  # graph blobs stay in the database
        downgrade(engine, "base")
        assert _tables(postgres_url) == {"alembic_version"}
        upgrade(engine)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()


def test_alembic_command_line_on_postgres(postgres_url):
    # The URL as a hosting service hands it out: plain postgresql://, which the store reads as psycopg 3.
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    out = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(MIGRATIONS_DIR / "alembic.ini"), "upgrade", "head"],
        capture_output=True,
        text=True,
        env={"CIRCUITBOARD_DATABASE_URL": plain, "PATH": ""},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert {"graphs", "jobs", "users", "subgraphs"} <= _tables(postgres_url)


def test_concurrent_startups_take_turns_migrating(postgres_url):
    """API replicas, workers and the migrate step start at once against one empty database."""
    stores = _race(4, lambda _: Store(postgres_url))
    try:
        assert all(isinstance(s, Store) for s in stores), stores
        assert stores[0].graphs.list(None, 1, 10) == ([], 0)
    finally:
        for s in stores:
            if isinstance(s, Store):
                s.close()


def test_same_graph_twice_is_one_row_under_racing_threads(postgres_url):
    store = Store(postgres_url)
    try:
        for round_ in range(3):  # several rounds: a race that happens to serialise once must not pass by luck
            key = f"{round_:064d}"

            def add(_: int, key: str = key) -> Any:
                return store.graphs.add(
                    dict(GRAPH), prompt="same", model="m", transcoders="t", source="traced", digest=key, cache_key=key
                )

            results = _race(4, add)
            assert all(not isinstance(r, Exception) for r in results), results
            assert len({r.slug for r in results}) == 1
            with store.db.session() as s:
                assert s.scalar(select(func.count()).where(GraphRow.cache_key == key)) == 1
        assert store.graphs.list(None, 1, 10)[1] == 3
    finally:
        store.close()


def test_a_job_finishes_once_under_racing_workers(postgres_url):
    """A redelivered job finished by two workers: the first terminal status wins, the other write is a no-op."""
    store = Store(postgres_url)
    try:
        store.jobs.create("j1", "p", {"prompt": "p"}, cache_key=None)
        results = _race(4, lambda i: store.jobs.finish("j1", "done", slug=f"s{i}"))
        assert sorted(results) == [False, False, False, True]
        job = store.jobs.get("j1")
        assert job is not None and job.status == "done" and job.slug == f"s{results.index(True)}"
    finally:
        store.close()


def test_graph_blob_round_trip_and_search(postgres_url):
    store = Store(postgres_url)
    try:
        big = {**GRAPH, "nodes": [{"node_id": f"E_{i}_0", "label": "é" * 10} for i in range(2000)]}
        kw: dict[str, Any] = {"model": "m", "transcoders": "t", "source": "imported", "digest": "d"}
        summary = store.graphs.add(big, prompt="Fact: 50% of x", **kw)
        assert store.graphs.get(summary.slug) == {**big, "metadata": {**big["metadata"], "slug": summary.slug}}
        assert store.graphs.list("50%", 1, 10)[1] == 1 and store.graphs.list("50_", 1, 10)[1] == 0
        assert store.graphs.list("FACT", 1, 10)[1] == 1  # case-insensitive on PostgreSQL too (ILIKE)
        assert summary.created_at.tzinfo is not None
        assert store.graphs.delete(summary.slug) and store.graphs.taken(summary.slug)
    finally:
        store.close()


def test_a_model_name_longer_than_its_column_is_kept_in_the_file(postgres_url):
    """SQLite ignores VARCHAR lengths, PostgreSQL enforces them: an imported file's long model name must not
    turn into a 500 there. The listing shows it cut; the stored file keeps it whole."""
    store = Store(postgres_url)
    try:
        long_name = "org/" + "m" * 400
        graph = {**GRAPH, "metadata": {"info": {"model": long_name}}}
        kw: dict[str, Any] = {"prompt": "p", "source": "imported", "digest": "x"}
        summary = store.graphs.add(graph, model=long_name, transcoders="t" * 400, **kw)
        assert summary.model == long_name[:300] and len(summary.transcoders) == 300
        assert store.graphs.get(summary.slug)["metadata"]["info"]["model"] == long_name
    finally:
        store.close()


def test_normalise_url():
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql://u@h:5/db") == "postgresql+psycopg://u@h:5/db"
    assert normalise_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:////tmp/x.sqlite") == "sqlite:////tmp/x.sqlite"


def test_postgres_engine_pool_options(postgres_url):
    engine = make_engine(postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        assert engine.dialect.driver == "psycopg"
        assert engine.pool.size() == 5  # type: ignore[attr-defined]
        with engine.connect() as conn:
            assert conn.execute(text("SHOW application_name")).scalar() == "circuitboard"
    finally:
        engine.dispose()


def test_graphs_survive_a_database_restart_and_the_pool_reconnects(postgres_server, postgres_url):
    """The server restarts under a running store (an upgrade, a failover): its pooled connections are dead, and
    pre-ping replaces them, so the first read after the restart succeeds instead of failing once per connection."""
    store = Store(postgres_url)
    try:
        kw: dict[str, Any] = {"model": "m", "transcoders": "t", "source": "traced", "digest": "k" * 64}
        slug = store.graphs.add(dict(GRAPH), prompt="before the restart", cache_key="k" * 64, **kw).slug
        _race(3, lambda _: store.graphs.list(None, 1, 10))  # several pooled connections, all soon dead
        postgres_server.stop()
        postgres_server.start()  # same port, same data
        for _ in range(3):
            assert store.graphs.get(slug) is not None
        assert store.graphs.by_cache_key("k" * 64).slug == slug
    finally:
        store.close()
