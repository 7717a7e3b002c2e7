"""Saved views of a graph under short ids: /graph/{slug}?subgraph={id}."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse

from circuitboard.api.deps import ServicesDep
from circuitboard.api.errors import field_error
from circuitboard.api.schemas import LOGIT_DIFF_ID, SubgraphCreate, SubgraphCreated, SubgraphOut
from circuitboard.store.records import SubgraphRecord

router = APIRouter(prefix="/api/graphs/{slug}/subgraphs", tags=["subgraphs"])


def _not_found(slug: str) -> HTTPException:
    return HTTPException(404, f"slug: no graph {slug!r}")


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
    if body.clickedId and body.clickedId not in node_ids:
        raise field_error(("body", "clickedId"), f"clickedId: unknown node id {body.clickedId!r}", body.clickedId)


def _out(rec: SubgraphRecord) -> SubgraphOut:
    return SubgraphOut.model_validate({**rec.state, "name": rec.name, "id": rec.id, "created_at": rec.created_at})


@router.post("", status_code=201, response_model=SubgraphCreated)
def save_subgraph(slug: str, body: SubgraphCreate, svc: ServicesDep) -> JSONResponse:
    graph = svc.store.graphs.get(slug)
    if graph is None:
        raise _not_found(slug)
    _check_ids(body, {str(n.get("node_id")) for n in graph.get("nodes") or [] if isinstance(n, dict)})
    state = body.model_dump(exclude={"name"})
    rec = svc.store.subgraphs.add(slug, state, body.name)
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
