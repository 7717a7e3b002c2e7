"""Alembic environment. Run programmatically by circuitboard.store.migrate (which passes a connection) or by
hand: `alembic -c backend/circuitboard/store/migrations/alembic.ini upgrade head` with
CIRCUITBOARD_DATABASE_URL set."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from circuitboard.store.db import normalise_url
from circuitboard.store.migrate import serialise_migrations
from circuitboard.store.models import Base

config = context.config
target_metadata = Base.metadata


def _configure_and_run(connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things, batch mode rebuilds the table instead.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from circuitboard.config import Settings

        url = Settings().resolved_database_url
    options = {"sqlalchemy.url": normalise_url(url)}
    connectable = engine_from_config(options, prefix="sqlalchemy.", poolclass=pool.NullPool)
    # begin(), not connect(): the lock opens the transaction, so Alembic runs inside it and this block commits.
    with connectable.begin() as conn:
        serialise_migrations(conn)
        _configure_and_run(conn)


if context.is_offline_mode():
    run_offline()
else:
    run_online()
