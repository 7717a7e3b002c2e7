"""Typed inputs and outputs of the job system."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from circuitboard.engine.types import AttributionParams
from circuitboard.store.records import GraphSummary, JobStatus

EngineState = Literal["loading", "ready", "failed", "none"]
EventName = Literal["queued", "progress", "done", "failed", "cancelled"]


class GraphRequest(AttributionParams):
    """A validated graph request, every default filled in: the prompt and the attribution parameters. It is
    what a job runs, what the cache keys on (with the model, transcoder set and token ids) and, dumped, the
    job's record in the database."""

    prompt: str

    def params(self) -> AttributionParams:
        """The engine's part: everything but the prompt."""
        return AttributionParams.model_validate(self.model_dump(exclude={"prompt"}))


class JobView(BaseModel):
    """A job's state as the API shows it. `position`: 1 = next to run, 0 = running, None = finished."""

    id: str
    status: JobStatus
    position: int | None = None
    phase: str | None = None
    done: int = 0
    total: int = 0
    slug: str | None = None
    error: str | None = None

    @property
    def event(self) -> EventName:
        return "progress" if self.status == "running" else self.status


class Submitted(BaseModel):
    """Result of submitting a graph request: a stored graph (cache hit) or a job (new or identical)."""

    graph: GraphSummary | None = None
    job: JobView | None = None
