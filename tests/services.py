"""Fixtures: `redis_server` / `postgres_server` (session: one private server each, .url, .stop(), .start()),
`redis_url` (per test: redis://127.0.0.1:PORT/0, flushed first), `postgres_url` (per test: a fresh database,
postgresql+psycopg://circuitboard@127.0.0.1:PORT/DB). Use them with `from services import redis_url, ...` in a conftest.

Real Debian `redis-server` and PostgreSQL (scripts/install-services.sh installs them; `make test` runs it), each on a
free loopback port with its data in a temp dir, started once per session and stopped after. Nothing else is reached.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from glob import glob
from pathlib import Path
from typing import Any, NoReturn

import pytest

PG_USER = "circuitboard"  # the cluster's superuser (trust auth on loopback: no password)
# PostgreSQL refuses to run as root. Running as root (as CI does), the cluster is created and run by this
# unprivileged system user (Debian's postgresql package creates it; created here if missing).
PG_OS_USER = "postgres"
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check, what: str, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer within {timeout:.0f} s")


def _missing(binary: str) -> NoReturn:
    pytest.fail(f"{binary} not found: run `bash scripts/install-services.sh` (make test does)", pytrace=False)


def redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


class RedisServer:
    """A private redis-server with append-only persistence, so a stop/start keeps what was acknowledged."""

    def __init__(self, root: Path) -> None:
        self.binary = shutil.which("redis-server") or _missing("redis-server")
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.root)]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "yes"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: redis_ping(self.port), f"redis-server on port {self.port}")

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        self.proc.kill() if kill else self.proc.terminate()
        self.proc.wait(timeout=START_TIMEOUT_S)
        self.proc = None

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"FLUSHALL\r\n")
            s.recv(16)


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    return found or _missing(name)


def _pg_os_user() -> str | None:
    """The user to run PostgreSQL as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_OS_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", PG_OS_USER], check=True)
    return PG_OS_USER


class PostgresServer:
    """A private PostgreSQL cluster (initdb + pg_ctl) in a temp dir, listening on 127.0.0.1 only."""

    def __init__(self, root: Path) -> None:
        self.initdb, self.pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.os_user = _pg_os_user()
        self.running = False
        if self.os_user is not None:
            shutil.chown(root, user=self.os_user)
        self._run([self.initdb, "-D", str(self.data), "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--no-sync"])

    def _run(self, args: list[str]) -> None:
        if self.os_user is not None:
            args = ["runuser", "-u", self.os_user, "--", *args]
        done = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        # Unix socket in our temp dir (the default /var/run/postgresql may not exist); fsync off: test data only.
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c max_connections=200"
        log = self.root / "server.log"
        self._run([self.pg_ctl, "-D", str(self.data), "-l", str(log), "-o", opts, "-w", "-t", "30", "start"])
        _wait(self._answers, f"postgres on port {self.port}")
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._run([self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"])
            self.running = False

    def _answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self._dsn("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:  # still starting ("the database system is starting up")
            return False

    def _dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={PG_USER} dbname={database}"

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# One server of each kind per session, however many conftests import the fixtures: each import is a fixture
# definition of its own, and without this each would start its own server.
_SHARED: dict[str, Any] = {}


@contextmanager
def _shared(kind: str, make: Callable[[Path], Any]) -> Iterator[Any]:
    server = _SHARED.get(kind)
    if server is None:
        root = Path(tempfile.mkdtemp(prefix=f"cb-{kind}-"))
        server = make(root)
        server.start()
        _SHARED[kind] = server
    try:
        yield server
    finally:
        if _SHARED.pop(kind, None) is server:  # the first teardown (at the session's end) stops it
            server.stop()
            shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with _shared("redis", RedisServer) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    if redis_server.proc is None:  # a test stopped it and failed before starting it again
        redis_server.start()
    redis_server.flush()
    return redis_server.url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with _shared("postgres", PostgresServer) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    if not postgres_server.running:  # a test stopped it and failed before starting it again
        postgres_server.start()
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)
