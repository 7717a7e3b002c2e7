"""Bring a database to the newest schema with Alembic, from code (the server calls this at startup)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, text

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any fixed 64-bit key, the same in every process: "circuitboard schema".
_PG_MIGRATION_LOCK = 0x63625F736368656D


def alembic_config() -> Config:
    cfg = Config()  # no ini file: logging stays as the server configured it
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def serialise_migrations(conn: Connection) -> None:
    """On PostgreSQL, API replicas, workers and the migrate step all upgrade at startup: a transaction-scoped
    advisory lock makes them take turns (DDL is transactional there, so the second finds the schema at head).
    SQLite's own write lock already serialises them."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        serialise_migrations(conn)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        serialise_migrations(conn)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at; None for an empty database."""
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
