"""Typed inputs and outputs of the job system."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from circuitboard.store.records import GraphSummary, JobStatus

EngineState = Literal["loading", "ready", "failed", "none"]
EventName = Literal["queued", "progress", "done", "failed", "cancelled"]


class GraphRequest(BaseModel):
    """A validated graph request with every default filled in: what a job runs and what the cache keys on
    (with the model, transcoder set and token ids)."""

    prompt: str
    max_n_logits: int
    desired_logit_prob: float
    max_feature_nodes: int
    node_threshold: float
    edge_threshold: float
    batch_size: int
    target_tokens: list[str] | None = None
    slug: str | None = None


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


class Progress(BaseModel):
    phase: str
    done: int = Field(ge=0)
    total: int = Field(ge=0)
