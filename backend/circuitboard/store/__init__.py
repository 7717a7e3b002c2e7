"""Persistence: SQLAlchemy 2 models, repositories and Alembic migrations (SQLite by default)."""

from __future__ import annotations

from circuitboard.store.db import Database
from circuitboard.store.graphs import GraphRepository, SlugUnavailable
from circuitboard.store.jobs import JobRepository
from circuitboard.store.labels import LabelRepository
from circuitboard.store.migrate import upgrade
from circuitboard.store.subgraphs import SubgraphRepository, TooManyViews
from circuitboard.store.users import UserExists, UserRepository


class Store:
    """The database and its repositories, opened and migrated to the newest schema."""

    def __init__(self, url: str) -> None:
        self.db = Database(url)
        upgrade(self.db.engine)
        self.graphs = GraphRepository(self.db)
        self.subgraphs = SubgraphRepository(self.db)
        self.jobs = JobRepository(self.db)
        self.users = UserRepository(self.db)
        self.labels = LabelRepository(self.db)

    def close(self) -> None:
        self.db.dispose()


__all__ = [
    "Database",
    "GraphRepository",
    "JobRepository",
    "LabelRepository",
    "SlugUnavailable",
    "Store",
    "SubgraphRepository",
    "TooManyViews",
    "UserExists",
    "UserRepository",
]
