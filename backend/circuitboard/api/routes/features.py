"""Feature atlas routes: one feature's record, label overrides, explanations, search.

The atlas comes from the `AtlasDep` dependency (api/deps.py): the services' atlas, or one an embedder set.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam

from circuitboard.api.deps import AtlasDep
from circuitboard.api.schemas import FeatureRecord, LabelsRequest, LabelsResult, LabelUpdate, SearchResult
from circuitboard.atlas.labels import LLMConfig, explain
from circuitboard.atlas.records import feature_record
from circuitboard.atlas.search import search
from circuitboard.atlas.store import AtlasStore

router = APIRouter(prefix="/api/features", tags=["features"])


def _record(store: AtlasStore, layer: int, index: int) -> dict[str, Any]:
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
    store: AtlasDep,
    q: str = Query(min_length=1, max_length=200, description="label, token or example text"),
    limit: int = Query(20, ge=1, le=200),
) -> dict[str, Any]:
    return {"items": search(store, q, limit=limit)}


@router.post("/labels", response_model=LabelsResult)
def post_labels(body: LabelsRequest, store: AtlasDep) -> dict[str, Any]:
    """Labels of many features in one call (node tooltips, the link graph)."""
    labels = store.labels_for(body.features)
    frequencies = store.frequencies_for(body.features)
    return {
        "labels": {f"{layer}_{idx}": label for (layer, idx), label in labels.items()},
        "frequencies": {f"{layer}_{idx}": f for (layer, idx), f in frequencies.items()},
    }


@router.get("/{layer}/{index}", response_model=FeatureRecord)
def get_feature(store: AtlasDep, layer: int = LayerParam, index: int = IndexParam) -> dict[str, Any]:
    return _record(store, layer, index)


@router.put("/{layer}/{index}/label", response_model=FeatureRecord)
def put_label(body: LabelUpdate, store: AtlasDep, layer: int = LayerParam, index: int = IndexParam) -> dict[str, Any]:
    _record(store, layer, index)  # 404 before writing a label for a feature that does not exist
    store.set_user_label(layer, index, body.label)
    return _record(store, layer, index)


@router.post("/{layer}/{index}/explain", response_model=FeatureRecord)
def post_explain(
    store: AtlasDep, layer: int = LayerParam, index: int = IndexParam, refresh: bool = False
) -> dict[str, Any]:
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
