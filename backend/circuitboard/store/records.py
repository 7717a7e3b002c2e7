"""Plain pydantic records the repositories return (never ORM objects, which are bound to a session)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel

GraphSource = Literal["traced", "imported"]
JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
JobKind = Literal["graph", "validate", "atlas"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"done", "failed", "cancelled"})


def as_utc(v: datetime | None) -> datetime | None:
    # SQLite hands datetimes back naive; they were written as UTC.
    if v is not None and v.tzinfo is None:
        return v.replace(tzinfo=UTC)
    return v


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


class GraphSummary(BaseModel):
    slug: str
    prompt: str
    model: str
    transcoders: str
    created_at: UtcDatetime
    n_nodes: int
    n_links: int
    source: GraphSource
    owner: str | None = None  # the owner's name; None: made in single-user mode


class SubgraphRecord(BaseModel):
    id: str
    graph_slug: str
    name: str | None
    state: dict[str, Any]
    created_at: UtcDatetime
    owner_id: int | None = None
    owner: str | None = None  # the owner's name


class JobRecord(BaseModel):
    id: str
    status: JobStatus
    prompt: str
    request: dict[str, Any]
    cache_key: str | None
    attempts: int
    phase: str | None
    done: int
    total: int
    slug: str | None
    error: str | None
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    owner_id: int | None = None
    kind: JobKind = "graph"
    result: dict[str, Any] | None = None
    queue: str | None = None  # the preset whose workers run it; None: the local worker
    worker: str | None = None  # the worker process that runs (or last ran) it

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class UserRecord(BaseModel):
    id: int
    name: str
    is_admin: bool
    created_at: UtcDatetime
    revoked: bool = False
    has_password: bool = False
