"""Wire models of the HTTP API (docs/api.md). Ranges that depend on settings are checked in the routes
against `Settings`, which `GET /api/config` serves, so the page and the server share one set of limits."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from circuitboard.config import InterventionLimits, ParamRanges
from circuitboard.jobs.models import EngineState
from circuitboard.store.records import GraphSource


class _In(BaseModel):
    # A misspelt field is an error naming it, not a silently ignored key.
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------------------- meta
class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    device: Literal["cuda", "cpu"]
    engine: EngineState


class Limits(BaseModel):
    max_prompt_tokens: int
    max_prompt_chars: int
    max_queue: int
    max_upload_bytes: int
    max_target_tokens: int


class ConfigOut(BaseModel):
    model: dict[str, Any] | None = Field(description="EngineInfo of the loaded model; null until it is ready")
    transcoders: str | None
    device: str
    engine: EngineState
    engine_error: str | None = None
    limits: Limits
    params: ParamRanges
    interventions: InterventionLimits


# ------------------------------------------------------------------------------------------- tokenize
class TokenizeIn(_In):
    prompt: str = Field(min_length=1)
    top_k: int = Field(default=10, ge=0, le=50)


class TokenOut(BaseModel):
    id: int
    text: str


class TokenProbOut(BaseModel):
    id: int
    text: str
    prob: float


class TokenizeOut(BaseModel):
    tokens: list[TokenOut]
    top_next: list[TokenProbOut]
    n_tokens: int
    too_long: bool
    busy: bool = Field(
        default=False, description="true when the model was busy with a graph job and top_next was skipped"
    )


# ------------------------------------------------------------------------------------------- graphs
class GraphCreate(_In):
    prompt: str = Field(min_length=1)
    max_n_logits: int | None = None
    desired_logit_prob: float | None = None
    max_feature_nodes: int | None = None
    node_threshold: float | None = None
    edge_threshold: float | None = None
    target_tokens: list[str] | None = None
    slug: str | None = None


class GraphCreated(BaseModel):
    slug: str
    cached: bool = True
    graph_url: str


class JobAccepted(BaseModel):
    job_id: str
    position: int | None
    status_url: str
    events_url: str


class GraphListItem(BaseModel):
    slug: str
    prompt: str
    model: str
    transcoders: str
    created_at: datetime
    n_nodes: int
    n_links: int
    source: GraphSource


class GraphList(BaseModel):
    items: list[GraphListItem]
    total: int
    page: int
    per_page: int


class ImportedGraph(GraphListItem):
    graph_url: str


# ------------------------------------------------------------------------------------------- subgraphs
LOGIT_DIFF_ID = "logit-diff"  # the page's synthetic "target minus contrast logit" node (frontend/src/logit-diff.js)


class SubgraphCreate(_In):
    name: str | None = Field(default=None, max_length=200)
    pinnedIds: list[str] = Field(default_factory=list, max_length=5000)
    supernodes: list[list[str]] = Field(default_factory=list, max_length=1000)
    clerps: list[list[str]] = Field(default_factory=list, max_length=5000)
    pruningThreshold: float | None = Field(default=None, ge=0.0, le=1.0)
    densityThreshold: float | None = Field(default=None, ge=0.0, le=1.0)
    clickedId: str | None = None
    hideLinks: list[Literal["pos", "neg", "feature", "error", "embedding"]] = Field(
        default_factory=list, max_length=5, description="link classes the link graph does not draw"
    )
    sgPos: list[tuple[str, float, float]] = Field(
        default_factory=list, max_length=5000, description="[[subgraph item id, x, y]]: placed subgraph nodes"
    )
    logitDiff: tuple[str, str] | None = Field(
        default=None, description=f"[target logit id, contrast logit id]: the synthetic node {LOGIT_DIFF_ID!r}"
    )


class SubgraphCreated(BaseModel):
    id: str
    url: str


class SubgraphOut(SubgraphCreate):
    model_config = ConfigDict(extra="ignore")
    id: str
    created_at: datetime


# ------------------------------------------------------------------------------------------- interventions
class FeatureInterventionIn(_In):
    layer: int = Field(ge=0)
    feature: int = Field(ge=0)
    position: int | None = Field(default=None, ge=0, description="null: every position, generated ones too")
    mode: Literal["set", "scale", "zero"]
    value: float = 0.0


class InterventionIn(_In):
    prompt: str = Field(min_length=1)
    interventions: list[FeatureInterventionIn] = Field(default_factory=list)
    freeze_attention: bool = False
    n_tokens: int = Field(default=10, ge=0)
    top_k: int = Field(default=5, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    seed: int = 0


class OutcomeOut(BaseModel):
    top: list[TokenProbOut]
    continuation: str
    continuation_ids: list[int] = Field(default_factory=list)


class InterventionOut(BaseModel):
    before: OutcomeOut
    after: OutcomeOut
