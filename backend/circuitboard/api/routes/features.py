"""Feature atlas routes: one feature's record, label overrides, explanations, search.

The atlas is a SQLite file next to the transcoders (models/<preset>/atlas.sqlite). `get_atlas` finds it from
`app.state.atlas` (an AtlasStore or a path; tests and embedders set this) or else from the app's settings
(`atlas_path` if the settings define one, else beside `transcoders_path`, else models_dir/<preset>/). It is
looked up per request, so an atlas built while the server runs is served without a restart.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from circuitboard.atlas.labels import LLMConfig, explain
from circuitboard.atlas.records import feature_record
from circuitboard.atlas.search import search
from circuitboard.atlas.store import AtlasStore

router = APIRouter(prefix="/api/features", tags=["features"])


# ---------------------------------------------------------------------------------------------- schemas


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


class LabelUpdate(BaseModel):
    label: str = Field(max_length=200, description="new label; empty restores the automatic one")


class LabelsRequest(BaseModel):
    features: list[tuple[int, int]] = Field(max_length=10_000, description="[[layer, index], ...]")


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


# ---------------------------------------------------------------------------------------------- atlas lookup


def atlas_path_from_settings(settings) -> Path | None:
    if settings is None:
        return None
    explicit = getattr(settings, "atlas_path", None)
    if explicit:
        return Path(explicit)
    tdir = getattr(settings, "transcoders_path", None)
    if tdir:
        return Path(tdir).parent / "atlas.sqlite"
    models_dir, preset = getattr(settings, "models_dir", None), getattr(settings, "preset", None)
    if models_dir and preset:
        return Path(models_dir) / preset / "atlas.sqlite"
    return None


def get_atlas(request: Request) -> AtlasStore:
    state = request.app.state
    atlas = getattr(state, "atlas", None)
    if isinstance(atlas, AtlasStore):
        return atlas
    if atlas is None:
        settings = getattr(state, "settings", None)
        if settings is None and getattr(state, "services", None) is not None:
            settings = state.services.settings
        atlas = atlas_path_from_settings(settings)
    path = Path(atlas) if atlas is not None else None
    if path is None or not path.is_file():
        where = f" at {path}" if path else ""
        raise HTTPException(404, f"no feature atlas{where}; build it with `circuitboard atlas build`")
    cache = getattr(state, "atlas_stores", None)
    if cache is None:
        cache = state.atlas_stores = {}
    store = cache.get(path)
    # a rebuilt atlas (new build hash) must not be read through the old store's token caches
    build = AtlasStore.peek_build_hash(path)
    if store is None or store.build_hash != build:
        store = cache[path] = AtlasStore(path)
        store.build_hash = build
    return store


def _record(store: AtlasStore, layer: int, index: int) -> dict:
    rec = feature_record(store, layer, index)
    if rec is None:
        sizes = store.layer_sizes()
        if layer not in sizes:
            raise HTTPException(404, f"no layer {layer} in the feature atlas (layers: {sorted(sizes)})")
        raise HTTPException(404, f"no feature {index} in layer {layer} (it has {sizes[layer]} features)")
    return rec


LayerParam = PathParam(ge=0, description="transcoder layer")
IndexParam = PathParam(ge=0, description="feature index within the layer")


# ---------------------------------------------------------------------------------------------- routes


@router.get("/search", response_model=SearchResult)
def search_features(
    q: str = Query(min_length=1, max_length=200, description="label, token or example text"),
    limit: int = Query(20, ge=1, le=200),
    store: AtlasStore = Depends(get_atlas),
) -> dict:
    return {"items": search(store, q, limit=limit)}


@router.post("/labels", response_model=LabelsResult)
def post_labels(body: LabelsRequest, store: AtlasStore = Depends(get_atlas)) -> dict:
    """Labels of many features in one call (node tooltips, the link graph)."""
    found = store.labels_for(body.features)
    return {
        "labels": {f"{layer}_{idx}": label for (layer, idx), label in found.items()},
        "frequencies": {f"{layer}_{idx}": f for (layer, idx), f in _frequencies(store, body.features).items()},
    }


def _frequencies(store: AtlasStore, pairs: list[tuple[int, int]]) -> dict[tuple[int, int], float]:
    """Activation frequencies of many features, read from the atlas's narrow `search` table (one query per layer
    and 900 ids, like AtlasStore.labels_for)."""
    by_layer: dict[int, list[int]] = {}
    for layer, idx in pairs:
        by_layer.setdefault(int(layer), []).append(int(idx))
    out: dict[tuple[int, int], float] = {}
    with store.connect() as con:
        for layer, idxs in by_layer.items():
            for start in range(0, len(idxs), 900):
                part = idxs[start : start + 900]
                q = f"SELECT idx, frequency FROM search WHERE layer = ? AND idx IN ({','.join('?' * len(part))})"
                out.update(((layer, i), float(f)) for i, f in con.execute(q, [layer, *part]))
    return out


@router.get("/{layer}/{index}", response_model=FeatureRecord)
def get_feature(layer: int = LayerParam, index: int = IndexParam, store: AtlasStore = Depends(get_atlas)) -> dict:
    return _record(store, layer, index)


@router.put("/{layer}/{index}/label", response_model=FeatureRecord)
def put_label(
    body: LabelUpdate, layer: int = LayerParam, index: int = IndexParam, store: AtlasStore = Depends(get_atlas)
) -> dict:
    _record(store, layer, index)  # 404 before writing a label for a feature that does not exist
    store.set_user_label(layer, index, body.label)
    return _record(store, layer, index)


@router.post("/{layer}/{index}/explain", response_model=FeatureRecord)
def post_explain(
    layer: int = LayerParam, index: int = IndexParam, refresh: bool = False, store: AtlasStore = Depends(get_atlas)
) -> dict:
    _record(store, layer, index)
    cfg = LLMConfig.from_env()
    if cfg is None:
        raise HTTPException(
            503, "LLM explanations are not configured (set CIRCUITBOARD_LLM_BASE_URL and CIRCUITBOARD_LLM_MODEL)"
        )
    try:
        explain(store, layer, index, cfg, refresh=refresh)
    except Exception as exc:  # noqa: BLE001 - any upstream failure is the endpoint's, not ours
        raise HTTPException(502, f"LLM endpoint failed: {exc}") from exc
    return _record(store, layer, index)
