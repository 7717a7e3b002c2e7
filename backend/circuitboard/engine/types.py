"""Typed inputs and outputs of the engine (what the worker, the API and the CLI exchange with it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class AttributionCancelled(Exception):
    """Raised inside attribution when the caller's `should_cancel()` turns true."""


class ProgressEvent(BaseModel):
    phase: str
    done: int
    total: int


class AttributionParams(BaseModel):
    max_n_logits: int = Field(10, ge=1, le=50)
    desired_logit_prob: float = Field(0.95, gt=0.0, le=1.0)
    max_feature_nodes: int | None = Field(2000, ge=1)
    batch_size: int = Field(64, ge=1, le=4096)
    node_threshold: float = Field(0.8, gt=0.0, le=1.0)
    edge_threshold: float = Field(0.98, gt=0.0, le=1.0)
    target_tokens: list[str] | None = None
    logit_diff: tuple[str, str] | None = None
    slug: str | None = None


class EngineInfo(BaseModel):
    model_name: str
    transcoder_name: str
    architecture: str
    n_layers: int
    d_model: int
    d_transcoder: int
    vocab_size: int
    cross_layer: bool
    device: str
    dtype: str
    fingerprint: str = ""  # identifies the exact weights + transcoders (cache keys), not just their names


class TokenInfo(BaseModel):
    id: int
    text: str


class TokenProb(BaseModel):
    id: int
    text: str
    prob: float


class TokenizeResult(BaseModel):
    tokens: list[TokenInfo]
    top_next: list[TokenProb]


class FeatureIntervention(BaseModel):
    layer: int = Field(ge=0)
    feature: int = Field(ge=0)
    position: int | None = Field(None, ge=0, description="token position; null = every position, generated too")
    mode: Literal["set", "scale", "zero"] = "set"
    value: float = 0.0


class InterventionRequest(BaseModel):
    prompt: str
    interventions: list[FeatureIntervention] = Field(default_factory=list)
    freeze_attention: bool = False
    n_tokens: int = Field(10, ge=0, le=64)
    top_k: int = Field(5, ge=1, le=50)
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    seed: int = 0


class Outcome(BaseModel):
    top: list[TokenProb]
    continuation: str
    continuation_ids: list[int] = Field(default_factory=list)


class InterventionResult(BaseModel):
    before: Outcome
    after: Outcome
