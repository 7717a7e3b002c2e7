"""Feature atlas routes: one feature's record, label overrides, explanations, search.

The atlas comes from the `AtlasDep` dependency (api/deps.py): the services' atlas, or one an embedder set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam

from circuitboard.api.auth import principal
from circuitboard.api.deps import AtlasDep
from circuitboard.api.limits import rate_limited
from circuitboard.api.schemas import FeatureRecord, LabelsRequest, LabelsResult, LabelUpdate, SearchResult
from circuitboard.atlas.labels import LLMConfig, explain
from circuitboard.atlas.records import feature_record
from circuitboard.atlas.search import search
from circuitboard.atlas.store import AtlasStore
from circuitboard.store import LabelRepository

router = APIRouter(prefix="/api/features", tags=["features"])


def _record(store: AtlasStore, layer: int, index: int) -> dict[str, Any]:
    rec = feature_record(store, layer, index)
    if rec is None:
        sizes = store.layer_sizes()
        if layer not in sizes:
            raise HTTPException(404, f"no layer {layer} in the feature atlas (layers: {sorted(sizes)})")
        raise HTTPException(404, f"no feature {index} in layer {layer} (it has {sizes[layer]} features)")
    return rec


# --------------------------------------------------------------------------------------- per-user labels
# On a single-user server a label is written into the atlas, as it always was. On a shared one each user's
# label is theirs (the server's database, keyed by the atlas file): they see their own over the atlas's.


@dataclass(frozen=True)
class UserLabels:
    """The signed-in user's own labels; without one (single-user, or an app embedding only these routes)
    there are none and a label goes into the atlas."""

    repo: LabelRepository | None = None
    user_id: int | None = None
    name: str | None = None

    def of(self, store: AtlasStore, features: list[tuple[int, int]]) -> dict[tuple[int, int], str]:
        if self.repo is None or self.user_id is None:
            return {}
        return self.repo.of_user(_atlas_key(store), self.user_id, features)

    def put(self, store: AtlasStore, layer: int, index: int, label: str) -> None:
        if self.repo is None or self.user_id is None:
            store.set_user_label(layer, index, label)
        else:
            self.repo.put(_atlas_key(store), self.user_id, (layer, index), label.strip())

    def over(self, store: AtlasStore, rec: dict[str, Any]) -> dict[str, Any]:
        own = self.of(store, [(rec["layer"], rec["index"])]).get((rec["layer"], rec["index"]))
        return rec if own is None else {**rec, "label": own, "label_source": "user", "label_by": self.name}


def _atlas_key(store: AtlasStore) -> str:
    return str(store.path.resolve())


def user_labels(request: Request) -> UserLabels:
    who = principal(request)
    if who.user_id is None:
        return UserLabels()
    return UserLabels(request.app.state.services.store.labels, who.user_id, who.name)


UserLabelsDep = Annotated[UserLabels, Depends(user_labels)]


LayerParam = PathParam(ge=0, le=2**31 - 1, description="transcoder layer")
IndexParam = PathParam(ge=0, le=2**31 - 1, description="feature index within the layer")


# ---------------------------------------------------------------------------------------------- routes


@router.get("/search", response_model=SearchResult)
def search_features(
    store: AtlasDep,
    q: str = Query(min_length=1, max_length=200, description="label, token or example text"),
    limit: int = Query(20, ge=1, le=200),
) -> dict[str, Any]:
    return {"items": search(store, q, limit=limit)}


@router.post("/labels", response_model=LabelsResult)
def post_labels(body: LabelsRequest, store: AtlasDep, own: UserLabelsDep) -> dict[str, Any]:
    """Labels of many features in one call (node tooltips, the link graph); a signed-in user's own first."""
    labels = store.labels_for(body.features)
    labels.update({f: label for f, label in own.of(store, body.features).items() if f in labels})
    frequencies = store.frequencies_for(body.features)
    return {
        "labels": {f"{layer}_{idx}": label for (layer, idx), label in labels.items()},
        "frequencies": {f"{layer}_{idx}": f for (layer, idx), f in frequencies.items()},
    }


@router.get("/{layer}/{index}", response_model=FeatureRecord)
def get_feature(
    store: AtlasDep, own: UserLabelsDep, layer: int = LayerParam, index: int = IndexParam
) -> dict[str, Any]:
    return own.over(store, _record(store, layer, index))


@router.put("/{layer}/{index}/label", response_model=FeatureRecord)
def put_label(
    body: LabelUpdate,
    store: AtlasDep,
    own: UserLabelsDep,
    layer: int = LayerParam,
    index: int = IndexParam,
) -> dict[str, Any]:
    _record(store, layer, index)  # 404 before writing a label for a feature that does not exist
    own.put(store, layer, index, body.label)
    return own.over(store, _record(store, layer, index))


@router.post("/{layer}/{index}/explain", response_model=FeatureRecord, dependencies=[rate_limited("explain")])
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
