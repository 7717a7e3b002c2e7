"""SQLAlchemy 2 ORM tables. Schema changes go through an Alembic revision in migrations/versions/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class GraphRow(Base):
    __tablename__ = "graphs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(100), nullable=False)
    prompt: Mapped[str] = mapped_column(Text, nullable=False, default="")
    model: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    transcoders: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    source: Mapped[str] = mapped_column(String(16), nullable=False)  # "traced" | "imported"
    # sha256 of (model, transcoders, token ids, targets, parameters); NULL for imported graphs.
    cache_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    n_nodes: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    n_links: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    size_bytes: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # uncompressed JSON
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # gzip'd graph JSON
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)

    __table_args__ = (
        UniqueConstraint("slug", name="uq_graphs_slug"),
        UniqueConstraint("cache_key", name="uq_graphs_cache_key"),
        Index("ix_graphs_created_at", "created_at"),
    )


class SubgraphRow(Base):
    __tablename__ = "subgraphs"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    graph_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("graphs.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # queued | running | done | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    prompt: Mapped[str] = mapped_column(Text, nullable=False)
    request: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)  # the validated graph request
    cache_key: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    phase: Mapped[str | None] = mapped_column(String(32), nullable=True)
    done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    slug: Mapped[str | None] = mapped_column(String(100), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
