"""Saved views of a graph under short ids: /graph/{slug}?subgraph={id}."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from circuitboard.api.auth import Principal, PrincipalDep, forbidden
from circuitboard.api.deps import Services, ServicesDep, get_atlas
from circuitboard.api.errors import field_error
from circuitboard.api.schemas import LOGIT_DIFF_ID, SubgraphCreate, SubgraphCreated, SubgraphOut
from circuitboard.store.records import SubgraphRecord

router = APIRouter(prefix="/api/graphs/{slug}/subgraphs", tags=["subgraphs"])


def _not_found(slug: str) -> HTTPException:
    return HTTPException(404, f"slug: no graph {slug!r}")


# The page names a supernode in the subgraph by its index in `supernodes` (frontend/src/actions.js).
_SUPERNODE_ITEM = re.compile(r"^supernode-\d{1,4}$")


def _check_ids(body: SubgraphCreate, node_ids: set[str]) -> None:
    """Every node a view refers to must exist in the graph, so a shared link cannot break on load."""
    if body.logitDiff:
        for i, nid in enumerate(body.logitDiff):
            if nid not in node_ids:
                raise field_error(("body", "logitDiff", i), f"logitDiff.{i}: unknown node id {nid!r}", nid)
        node_ids = node_ids | {LOGIT_DIFF_ID}
    for i, nid in enumerate(body.pinnedIds):
        if nid not in node_ids:
            raise field_error(("body", "pinnedIds", i), f"pinnedIds.{i}: unknown node id {nid!r}", nid)
    for i, group in enumerate(body.supernodes):
        if len(group) < 2:
            raise field_error(("body", "supernodes", i), f"supernodes.{i}: needs a label and at least one node id")
        for j, nid in enumerate(group[1:], start=1):
            if nid not in node_ids:
                raise field_error(("body", "supernodes", i, j), f"supernodes.{i}.{j}: unknown node id {nid!r}", nid)
    for i, pair in enumerate(body.clerps):
        if len(pair) != 2:
            raise field_error(("body", "clerps", i), f"clerps.{i}: must be a [node_id, label] pair", pair)
        if pair[0] not in node_ids:
            raise field_error(("body", "clerps", i, 0), f"clerps.{i}.0: unknown node id {pair[0]!r}", pair[0])
    for i, (item, _, _) in enumerate(body.sgPos):
        if item not in node_ids and not _SUPERNODE_ITEM.match(item):
            raise field_error(("body", "sgPos", i, 0), f"sgPos.{i}.0: unknown subgraph item {item!r}", item)
    if body.clickedId and body.clickedId not in node_ids:
        raise field_error(("body", "clickedId"), f"clickedId: unknown node id {body.clickedId!r}", body.clickedId)


def _out(rec: SubgraphRecord) -> SubgraphOut:
    return SubgraphOut.model_validate(
        {**rec.state, "name": rec.name, "id": rec.id, "created_at": rec.created_at, "owner": rec.owner}
    )


_FEATURE_ID = re.compile(r"^(\d+)_(\d+)_\d+$")


def _carried_labels(request: Request, svc: Services, who: Principal, graph: dict[str, Any], body: SubgraphCreate):
    """[node_id, label] of the graph's features the saver labelled (shared mode): their labels travel with the
    view, as the page's per-node labels, to whoever opens its link."""
    if who.user_id is None:
        return []
    try:
        atlas = get_atlas(request)
    except HTTPException:  # no atlas: no labels to carry
        return []
    nodes: dict[tuple[int, int], list[str]] = {}
    for n in graph.get("nodes") or []:
        m = _FEATURE_ID.match(str(n.get("node_id"))) if isinstance(n, dict) else None
        if m and "transcoder" in str(n.get("feature_type", "")):
            nodes.setdefault((int(m.group(1)), int(m.group(2))), []).append(m.group(0))
    own = svc.store.labels.of_user(str(atlas.path.resolve()), who.user_id, list(nodes))
    named = {pair[0] for pair in body.clerps}
    return [[nid, label] for f, label in own.items() for nid in nodes[f] if nid not in named]


@router.post("", status_code=201, response_model=SubgraphCreated)
def save_subgraph(
    slug: str, body: SubgraphCreate, request: Request, svc: ServicesDep, who: PrincipalDep
) -> JSONResponse:
    graph = svc.store.graphs.get(slug)
    if graph is None:
        raise _not_found(slug)
    _check_ids(body, {str(n.get("node_id")) for n in graph.get("nodes") or [] if isinstance(n, dict)})
    state = body.model_dump(exclude={"name"})
    state["clerps"] = [*state["clerps"], *_carried_labels(request, svc, who, graph, body)][:5000]
    limit = svc.settings.max_saved_views
    rec = svc.store.subgraphs.add(slug, state, body.name, owner_id=who.user_id, limit=limit)
    if rec is None:  # deleted between the two reads
        raise _not_found(slug)
    out = SubgraphCreated(id=rec.id, url=f"/graph/{slug}?subgraph={rec.id}")
    return JSONResponse(out.model_dump(), status_code=201)


@router.get("", response_model=list[SubgraphOut])
def list_subgraphs(slug: str, svc: ServicesDep) -> list[SubgraphOut]:
    if not svc.store.graphs.exists(slug):
        raise _not_found(slug)
    return [_out(r) for r in svc.store.subgraphs.list(slug)]


@router.get("/{subgraph_id}", response_model=SubgraphOut)
def get_subgraph(slug: str, subgraph_id: str, svc: ServicesDep) -> SubgraphOut:
    rec = svc.store.subgraphs.get(slug, subgraph_id)
    if rec is None:
        if not svc.store.graphs.exists(slug):
            raise _not_found(slug)
        raise HTTPException(404, f"subgraph: no saved view {subgraph_id!r} of graph {slug!r}")
    return _out(rec)


@router.delete("/{subgraph_id}", status_code=204)
def delete_subgraph(slug: str, subgraph_id: str, svc: ServicesDep, who: PrincipalDep) -> Response:
    """Only the view's owner or an admin."""
    rec = svc.store.subgraphs.get(slug, subgraph_id)
    if rec is None:
        if not svc.store.graphs.exists(slug):
            raise _not_found(slug)
        raise HTTPException(404, f"subgraph: no saved view {subgraph_id!r} of graph {slug!r}")
    if not who.may_change(rec.owner_id):
        raise forbidden(f"saved view {subgraph_id!r}")
    svc.store.subgraphs.delete(subgraph_id)
    return Response(status_code=204)
