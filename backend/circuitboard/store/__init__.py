"""Persistence: SQLAlchemy 2 models, repositories and Alembic migrations (SQLite by default)."""

from __future__ import annotations

from circuitboard.store.db import Database
from circuitboard.store.graphs import GraphRepository, SlugUnavailable
from circuitboard.store.jobs import JobRepository
from circuitboard.store.migrate import upgrade
from circuitboard.store.subgraphs import SubgraphRepository


class Store:
    """The database and its repositories, opened and migrated to the newest schema."""

    def __init__(self, url: str) -> None:
        self.db = Database(url)
        upgrade(self.db.engine)
        self.graphs = GraphRepository(self.db)
        self.subgraphs = SubgraphRepository(self.db)
        self.jobs = JobRepository(self.db)

    def close(self) -> None:
        self.db.dispose()


__all__ = ["Database", "GraphRepository", "JobRepository", "SlugUnavailable", "Store", "SubgraphRepository"]
