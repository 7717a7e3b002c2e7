"""Typed inputs and outputs of the job system."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from circuitboard.engine.types import AttributionParams
from circuitboard.engine.validation import ValidateRequest
from circuitboard.store.records import GraphSummary, JobKind, JobStatus

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


class ValidateJob(BaseModel):
    """A validation job's request: the stored graph and the supernodes to check on it."""

    slug: str
    body: ValidateRequest


class JobState(BaseModel):
    """A job's state. `position`: 1 = next to run, 0 = running, None = finished. A job that is done has
    phase "done" and done == total."""

    id: str
    status: JobStatus
    position: int | None = None
    phase: str | None = None
    done: int = 0
    total: int = 0
    slug: str | None = None
    error: str | None = None


class JobView(JobState):
    """A job's state as status and events show it, with one number for its progress."""

    fraction: float = Field(
        default=0.0, ge=0.0, le=1.0, description="0..1 through the whole job; never decreases while it runs"
    )
    eta_s: float | None = Field(default=None, description="seconds left at the pace so far; null until known")
    kind: JobKind = Field(
        default="graph", description='"graph": a trace (its result is `slug`); "validate", "atlas": see `result_url`'
    )
    result_url: str | None = Field(default=None, description="GET it for the result of a done non-graph job")

    @property
    def event(self) -> EventName:
        return "progress" if self.status == "running" else self.status


class Submitted(BaseModel):
    """Result of submitting a graph request: a stored graph (cache hit) or a job (new or identical)."""

    graph: GraphSummary | None = None
    job: JobView | None = None
