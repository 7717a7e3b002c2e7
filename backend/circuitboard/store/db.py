"""Database engine and sessions. SQLite by default (WAL, so readers never wait for the worker's writes);
PostgreSQL (`postgresql+psycopg://...`) for several API replicas and workers, through the same code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def changed_rows(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE changed. Session.execute returns a CursorResult for them, typed as Result."""
    return cast(CursorResult[Any], result).rowcount


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the API read graphs while the worker writes progress and results.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    # Writers from the request threads and the worker thread queue up instead of failing at once.
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


# PostgreSQL pool per process: a request holds a connection for a few milliseconds, so 5 kept plus 10 on demand
# serve the API's 40 request threads, and six processes at their peak (90) stay under PostgreSQL's default
# max_connections (100). Pre-ping replaces connections the server dropped (a restart, a failover); recycling
# before 30 min stays under the idle cut-off of common poolers and load balancers.
_PG_POOL: dict[str, Any] = {"pool_size": 5, "max_overflow": 10, "pool_pre_ping": True, "pool_recycle": 1800}
_PG_CONNECT = {"connect_timeout": 10, "application_name": "circuitboard"}


def normalise_url(url: str) -> str:
    """`postgres://` and `postgresql://` (what hosting services hand out) mean psycopg 3, the driver installed."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, connect_args=_PG_CONNECT, **_PG_POOL)
    return create_engine(parsed, pool_pre_ping=True)


class Database:
    """One SQLAlchemy engine plus a session factory; shared by the API threads and the worker."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self._sessions.begin() as s:
            yield s

    def dispose(self) -> None:
        self.engine.dispose()
