"""`circuitboard db upgrade|current`: the store's schema (Alembic). The server upgrades at startup too; the
explicit step is for deployments where several processes share one database (docker-compose's `migrate`)."""

from __future__ import annotations

import argparse

from circuitboard.config import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("db", help="the database schema: upgrade to the newest, show the current revision")
    p.add_argument("--db", default=None, help="SQLAlchemy database URL (default: the server's)")
    sub = p.add_subparsers(dest="db_command", metavar="ACTION")
    sub.required = True
    up = sub.add_parser("upgrade", help="migrate the database to the newest schema (or --revision)")
    up.add_argument("--revision", default="head", help="target revision (default head)")
    up.set_defaults(func=_upgrade)
    sub.add_parser("current", help="print the database's revision and the newest one").set_defaults(func=_current)


def _url(args: argparse.Namespace) -> str:
    return Settings(**({"database_url": args.db} if args.db else {})).resolved_database_url


def _upgrade(args: argparse.Namespace) -> int:
    from circuitboard.store.db import make_engine
    from circuitboard.store.migrate import current_revision, upgrade

    engine = make_engine(_url(args))
    try:
        upgrade(engine, args.revision)
        print(f"database at revision {current_revision(engine)}")
    finally:
        engine.dispose()
    return 0


def _current(args: argparse.Namespace) -> int:
    from circuitboard.store.db import make_engine
    from circuitboard.store.migrate import current_revision, head_revision

    engine = make_engine(_url(args))
    try:
        current, head = current_revision(engine), head_revision()
    finally:
        engine.dispose()
    print(f"current {current or '(empty)'}, newest {head}")
    return 0 if current == head else 1
