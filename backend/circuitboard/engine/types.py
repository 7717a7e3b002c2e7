"""Typed inputs and outputs of the engine (what the worker, the API and the CLI exchange with it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from circuitboard.ranges import IntRange, ParamRange, RangeOverrides


class AttributionCancelled(Exception):
    """Raised inside attribution when the caller's `should_cancel()` turns true."""


class ProgressEvent(BaseModel):
    phase: str
    done: int = Field(ge=0)
    total: int = Field(ge=0)


@dataclass(frozen=True)
class Ranged:
    """Field metadata of an attribution parameter a user chooses: its inclusive range. With the field's default
    it makes the parameter's `ParamRange` (see `param_ranges`)."""

    min: float
    max: float


Precision = Literal["fp32", "bf16", "auto"]


class AttributionParams(BaseModel):
    """Every parameter of one trace, and the one declaration of their ranges and defaults: the CLI flags of
    `circuitboard trace`, the API's request schema, the job record and `GET /api/config` are derived from it.

    The ranges are checked where a user's choice comes in (`check`, by the API and the CLI), not on every
    construction: an operator may widen a range (Settings.params), and the engine must then accept the value."""

    max_n_logits: Annotated[int, Ranged(1, 20)] = 10
    desired_logit_prob: Annotated[float, Ranged(0.5, 0.99)] = 0.95
    max_feature_nodes: Annotated[int, Ranged(1, 10_000)] = 2000
    batch_size: int = Field(64, ge=1, le=4096)  # the host's choice (Settings.batch_size), not the user's
    node_threshold: Annotated[float, Ranged(0.1, 1.0)] = 0.8
    edge_threshold: Annotated[float, Ranged(0.1, 1.0)] = 0.98
    target_tokens: list[str] | None = None
    logit_diff: tuple[str, str] | None = None
    # Trace back from transcoder features (layer, index, position) instead of logits (issue 13).
    target_features: list[tuple[int, int, int]] | None = None
    # Opt-in reduced precision (issue 16): "bf16" runs the backward's matmuls in bfloat16 (rows are still added
    # up and stored in fp32), "auto" does so where this machine computes bf16 fast (precision.compute_dtype).
    # The graph's metadata says which ran (info.precision). fp32 is the default and the exact reference.
    precision: Precision = "fp32"
    slug: str | None = None

    def check(self, ranges: Mapping[str, ParamRange] | None = None) -> None:
        """Raises OutOfRange for the first ranged parameter outside `ranges` (default: the declared ones)."""
        for name, rng in (param_ranges() if ranges is None else ranges).items():
            value = getattr(self, name)
            if not rng.min <= value <= rng.max:
                raise OutOfRange(name, value, rng)


class OutOfRange(ValueError):
    def __init__(self, name: str, value: float, rng: ParamRange) -> None:
        super().__init__(f"{name}: must be between {rng.min} and {rng.max} (got {value})")
        self.name = name
        self.value = value


def ranged_fields() -> dict[str, type]:
    """Name -> type (int or float) of every parameter with a declared range, in declaration order."""
    return {
        name: int if field.annotation is int else float
        for name, field in AttributionParams.model_fields.items()
        if any(isinstance(m, Ranged) for m in field.metadata)
    }


def param_ranges(overrides: RangeOverrides | None = None) -> dict[str, ParamRange]:
    """The range and default of every ranged parameter: as declared, changed by `overrides` (Settings.params).
    Raises ValidationError when a change leaves a default outside its range. Changes to unknown names are
    ignored, as any unknown setting is."""
    changes = (overrides.model_extra or {}) if overrides is not None else {}
    out: dict[str, ParamRange] = {}
    for name, kind in ranged_fields().items():
        field = AttributionParams.model_fields[name]
        declared = next(m for m in field.metadata if isinstance(m, Ranged))
        values = {"min": declared.min, "max": declared.max, "default": field.default}
        change = changes.get(name)
        if change is not None:
            values.update(change.model_dump(exclude_none=True))
        out[name] = (IntRange if kind is int else ParamRange).model_validate(values)
    return out


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


class TargetToken(BaseModel):
    """How the tokenizer reads a candidate target token (the trace form warns before tracing a bad one)."""

    text: str
    ids: list[int] = Field(description="its token ids, without special tokens")
    single: bool = Field(description="exactly one token: usable as a target")
    prob: float | None = Field(
        default=None, description="next-token probability after the prompt; null unless single and the model ran"
    )


class TokenizeResult(BaseModel):
    tokens: list[TokenInfo]
    top_next: list[TokenProb]
    targets: list[TargetToken] = Field(default_factory=list)


InterventionMode = Literal["set", "scale", "zero"]


# Indices fit the 32-bit integers torch and SQLite take; a larger one is a mistake, not a request. Seeds span what
# torch.Generator.manual_seed accepts.
_MAX_INDEX = 2**31 - 1
_SEED_RANGE = (-(2**63), 2**64 - 1)


class FeatureIntervention(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    layer: int = Field(ge=0, le=_MAX_INDEX)
    feature: int = Field(ge=0, le=_MAX_INDEX)
    position: int | None = Field(
        default=None, ge=0, le=_MAX_INDEX, description="null: every position, generated ones too"
    )
    mode: InterventionMode = "set"
    value: float = 0.0


class InterventionRequest(BaseModel):
    """One intervention run. Upper bounds are the service's (config.InterventionLimits, checked by the API)."""

    model_config = ConfigDict(allow_inf_nan=False)

    prompt: str
    interventions: list[FeatureIntervention] = Field(default_factory=list)
    freeze_attention: bool = False
    n_tokens: int = Field(default=10, ge=0)
    top_k: int = Field(default=5, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    seed: int = Field(default=0, ge=_SEED_RANGE[0], le=_SEED_RANGE[1])
    watch: list[str] = Field(
        default_factory=list,
        description="token strings (each exactly one token, leading spaces significant) whose probabilities "
        "`before` and `after` report, in this order",
    )


class Outcome(BaseModel):
    top: list[TokenProb]
    watch: list[TokenProb] = Field(default_factory=list, description="the watched tokens, in the order asked")
    continuation: str
    continuation_ids: list[int] = Field(default_factory=list)


class InterventionResult(BaseModel):
    before: Outcome
    after: Outcome
