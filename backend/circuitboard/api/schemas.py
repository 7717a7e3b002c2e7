"""Wire models of the HTTP API (docs/api.md). Ranges that depend on settings are checked in the routes
against `Settings`, which `GET /api/config` serves, so the page and the server share one set of limits.

The attribution parameters and intervention requests are the engine's models (circuitboard.engine.types);
the request schemas here are derived from them, so a parameter is declared once."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from circuitboard.config import InterventionLimits, RateLimits
from circuitboard.engine.estimate import TraceLimits
from circuitboard.engine.types import (
    FeatureIntervention,
    InterventionMode,
    InterventionRequest,
    TargetToken,
    TokenInfo,
    TokenProb,
    param_ranges,
    ranged_fields,
)
from circuitboard.jobs.models import EngineState, JobView
from circuitboard.jobs.transport import PresetStatus
from circuitboard.store.records import GraphSource

M = TypeVar("M", bound=BaseModel)


def lone_surrogate_path(value: Any, path: str = "") -> str | None:
    """The path (`a.0.b`) of the first string in `value` that is not valid Unicode (a lone UTF-16 surrogate,
    which JSON's `\\ud800` escapes can carry), or None. Such a string fails later, in the tokenizer or SQLite."""
    if isinstance(value, str):
        return None if value.isascii() or _encodes(value) else path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and not key.isascii() and not _encodes(key):
            return where
        found = lone_surrogate_path(item, where)
        if found is not None:
            return found
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _ValidText(BaseModel):
    """Request bodies whose strings are all valid Unicode, and whose numbers are all finite."""

    model_config = ConfigDict(allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _valid_text(cls, data: Any) -> Any:
        where = lone_surrogate_path(data)
        if where is not None:
            raise ValueError(f"{where}: text must be valid Unicode (it holds a lone surrogate such as \\ud800)")
        return data


class _In(_ValidText):
    # A misspelt field is an error naming it, not a silently ignored key.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


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
    max_queue_per_user: int
    max_upload_bytes: int
    max_import_nodes: int
    max_import_links: int
    max_saved_views: int
    max_target_tokens: int
    max_trace_seconds: float = Field(description="a trace estimated to take longer is refused (POST /api/estimate)")
    max_trace_bytes: int = Field(description="likewise a trace estimated to need more memory at its peak")


def _with_ranges(cls: type[M]) -> type[M]:
    """`cls` with one field per ranged attribution parameter, holding its range (the declared one by default)."""
    fields: dict[str, Any] = {n: (type(rng), rng) for n, rng in param_ranges().items()}  # IntRange or ParamRange
    return create_model(cls.__name__, __base__=cls, __module__=cls.__module__, __doc__=cls.__doc__, **fields)


@_with_ranges
class ParamRanges(BaseModel):
    """Range and default of every attribution parameter a request may set (AttributionParams' fields)."""


class ConfigOut(BaseModel):
    model: dict[str, Any] | None = Field(description="EngineInfo of the loaded model; null until it is ready")
    transcoders: str | None
    device: str
    engine: EngineState
    engine_error: str | None = None
    limits: Limits
    params: ParamRanges
    interventions: InterventionLimits
    rate_limits: RateLimits = Field(description="per signed-in user (or per address), and per address x factor")
    auth: Literal["required", "off"] = Field(description='"required": a shared server, every call needs a user')
    queue: Literal["local", "redis"] = Field(default="local", description='"redis": jobs run on worker processes')
    presets: list[PresetStatus] = Field(
        default_factory=list, description="the presets that can take jobs now (with a live, loaded worker)"
    )


# ------------------------------------------------------------------------------------------- tokenize
class TokenizeIn(_In):
    prompt: str = Field(min_length=1)
    top_k: int = Field(default=10, ge=0, le=50)
    targets: list[str] | None = Field(
        default=None, description="candidate target tokens (at most limits.max_target_tokens), read as typed"
    )


class TokenizeOut(BaseModel):
    tokens: list[TokenInfo]
    top_next: list[TokenProb]
    targets: list[TargetToken] = Field(
        default_factory=list, description="how each asked target reads: its ids, one token or not, its probability"
    )
    n_tokens: int
    too_long: bool
    busy: bool = Field(
        default=False, description="true when the model was busy with a graph job and top_next was skipped"
    )


# ------------------------------------------------------------------------------------------- graphs
def _with_params(cls: type[M]) -> type[M]:
    """`cls` with every ranged attribution parameter as an optional field; null takes the range's default.
    The ranges are checked against Settings in the route, not here: an operator may change them."""
    fields: dict[str, Any] = {n: (t | None, None) for n, t in ranged_fields().items()}
    return create_model(cls.__name__, __base__=cls, __module__=cls.__module__, __doc__=cls.__doc__, **fields)


# A layer, feature index or position: SQLite's integers stop at 2**63, and no transcoder nears 2**31 features.
FeatureIndex = Annotated[int, Field(ge=0, le=2**31 - 1)]


@_with_params
class GraphCreate(_In):
    """POST /api/graphs: a prompt, and any of the attribution parameters a user chooses."""

    prompt: str = Field(min_length=1)
    target_tokens: list[str] | None = None
    target_features: list[tuple[FeatureIndex, FeatureIndex, FeatureIndex]] | None = Field(
        default=None,
        description="trace back from these transcoder features, [layer, index, position] each, instead of logits "
        "(at most limits.max_target_tokens; not together with target_tokens)",
    )
    slug: str | None = None
    preset: str | None = Field(
        default=None,
        max_length=80,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="the preset whose workers trace it (distributed mode: GET /api/config lists the presets with "
        "live workers); default: this server's preset. A preset no worker serves is a 503 naming it",
    )


class GraphCreated(BaseModel):
    slug: str
    cached: bool = True
    graph_url: str


class JobAccepted(BaseModel):
    job_id: str
    position: int | None
    status_url: str
    events_url: str


class JobStarted(BaseModel):
    """A job accepted into the queue (202): its state now; follow /api/jobs/{id} or its events."""

    job: JobView


class EstimateOut(BaseModel):
    """POST /api/estimate: what tracing this request would cost here, and whether the server takes it."""

    tokens: int
    seconds: float = Field(description="predicted time of the trace (pruning and export included)")
    peak_bytes: int = Field(description="predicted peak memory of the process while it traces")
    fits: bool = Field(description="within limit (and the prompt within limits.max_prompt_tokens)")
    limit: TraceLimits = Field(description="Settings.max_trace_seconds and max_trace_bytes")
    reason: str | None = Field(default=None, description="why it does not fit, naming `prompt`; null when it fits")


class GraphListItem(BaseModel):
    slug: str
    prompt: str
    model: str
    transcoders: str
    created_at: datetime
    n_nodes: int
    n_links: int
    source: GraphSource
    owner: str | None = Field(default=None, description="who made it; null on a single-user server")


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
    owner: str | None = Field(default=None, description="who saved it; null on a single-user server")


# ------------------------------------------------------------------------------------------- interventions
class FeatureInterventionIn(FeatureIntervention):
    model_config = ConfigDict(extra="forbid")
    mode: InterventionMode  # no default over HTTP: a request that leaves it out is a mistake, not a "set"


class InterventionIn(InterventionRequest, _ValidText):
    """The engine's InterventionRequest, strict; its upper bounds are Settings.interventions."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    prompt: str = Field(min_length=1)
    # the same items, stricter: pydantic validates the subclass; mypy sees a list's type narrowed
    interventions: list[FeatureInterventionIn] = Field(default_factory=list)  # type: ignore[assignment]


# ------------------------------------------------------------------------------------------- features
class TokenValue(BaseModel):
    id: int
    text: str
    value: float


class InputToken(TokenValue):
    count: int = Field(description="occurrences of this token where the feature is active")
    mean: float = Field(description="mean activation on this token when active")


class Histogram(BaseModel):
    edges: list[float] = Field(description="bin edges, len(counts) + 1, from 0")
    counts: list[int] = Field(description="nonzero activations per bin (position 0 / BOS excluded)")


class Example(BaseModel):
    tokens: list[str]
    token_ids: list[int]
    acts: list[float] = Field(description="this feature's activation at each token of the window")
    max_act: float
    center: int = Field(description="index in `tokens` of the token the example was chosen for")
    seq: int
    position: int


class QuantileExamples(BaseModel):
    name: str
    examples: list[Example]


class FeatureRecord(BaseModel):
    layer: int
    index: int
    label: str
    label_source: str = Field(description='"user" when overridden, else "auto"')
    label_by: str | None = Field(
        default=None, description="on a shared server, the user whose own label this is (null: the atlas's)"
    )
    auto_label: str
    explanation: str | None = None
    max_act: float
    mean_act: float
    frequency: float = Field(description="fraction of (non-BOS) tokens where the feature is active")
    n_active: int
    histogram: Histogram
    quantile_values: list[float] = Field(description="percentiles 1..100 of nonzero activations")
    top_logits: list[TokenValue]
    bottom_logits: list[TokenValue]
    top_input_tokens: list[InputToken]
    examples: list[Example]
    quantile_examples: list[QuantileExamples]


class LabelUpdate(_ValidText):
    label: str = Field(max_length=200, description="new label; empty restores the automatic one")


class LabelsRequest(_ValidText):
    features: list[tuple[FeatureIndex, FeatureIndex]] = Field(max_length=10_000, description="[[layer, index], ...]")


class LabelsResult(BaseModel):
    labels: dict[str, str] = Field(description='"{layer}_{index}" -> label, for the features the atlas has')
    frequencies: dict[str, float] = Field(
        default_factory=dict,
        description='"{layer}_{index}" -> activation frequency (fraction of non-BOS tokens where it is active); '
        "the page's feature-density filter hides features above a threshold",
    )


class SearchItem(BaseModel):
    layer: int
    index: int
    label: str
    max_act: float
    frequency: float


class SearchResult(BaseModel):
    items: list[SearchItem]


# ------------------------------------------------------------------------------------------- session
class SignIn(_In):
    token: str | None = Field(default=None, max_length=200, description="an API token (`circuitboard users add`)")
    name: str | None = Field(default=None, max_length=80)
    password: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _one_way(self) -> SignIn:
        if (self.token is None) == (self.name is None or self.password is None):
            raise ValueError("token: send either a token, or a name and a password")
        return self


class UserOut(BaseModel):
    name: str
    is_admin: bool


class SessionOut(BaseModel):
    auth: Literal["required", "off"] = Field(description='"off": a single-user server, nobody signs in')
    user: UserOut | None = Field(description="who is signed in; null when nobody (or a single-user server)")
    via: Literal["local", "token", "session", "anonymous"]
    csrf_token: str | None = Field(
        default=None, description="send it as X-CSRF-Token with every POST, PUT, PATCH and DELETE of this session"
    )
