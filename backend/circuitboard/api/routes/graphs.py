"""Graphs: request one (cache hit or job), list, read, delete, export."""

from __future__ import annotations

import gzip

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse

from circuitboard.api.auth import PrincipalDep, forbidden
from circuitboard.api.deps import ServicesDep
from circuitboard.api.limits import rate_limited
from circuitboard.api.params import graph_request
from circuitboard.api.routes.estimate import refuse_unfit
from circuitboard.api.schemas import GraphCreate, GraphCreated, GraphList, GraphListItem, JobAccepted

router = APIRouter(prefix="/api/graphs", tags=["graphs"])


def graph_url(slug: str) -> str:
    return f"/api/graphs/{slug}"


def not_found(slug: str) -> HTTPException:
    return HTTPException(404, f"slug: no graph {slug!r}")


@router.post(
    "",
    status_code=202,
    responses={201: {"model": GraphCreated, "description": "cached"}, 202: {"model": JobAccepted}},
    dependencies=[rate_limited("traces")],
)
def create_graph(body: GraphCreate, svc: ServicesDep, who: PrincipalDep) -> JSONResponse:
    req = graph_request(body, svc.settings, svc.ranges)
    # Before submit's cache lookup: a cached graph the limits refuse now exists only if they were lowered since.
    refuse_unfit(req, svc)
    result = svc.jobs.submit(req, owner_id=who.user_id, preset=body.preset)
    if result.graph is not None:
        out = GraphCreated(slug=result.graph.slug, cached=True, graph_url=graph_url(result.graph.slug))
        return JSONResponse(out.model_dump(), status_code=201)
    job = result.job
    assert job is not None
    accepted = JobAccepted(
        job_id=job.id,
        position=job.position,
        status_url=f"/api/jobs/{job.id}",
        events_url=f"/api/jobs/{job.id}/events",
    )
    return JSONResponse(accepted.model_dump(), status_code=202)


@router.get("", response_model=GraphList)
def list_graphs(
    svc: ServicesDep,
    q: str | None = Query(default=None, max_length=200, description="matches the prompt or the slug"),
    page: int = Query(default=1, ge=1, le=1_000_000),
    per_page: int = Query(default=20, ge=1, le=100),
) -> GraphList:
    items, total = svc.store.graphs.list(q, page, per_page)
    return GraphList(
        items=[GraphListItem.model_validate(i.model_dump()) for i in items],
        total=total,
        page=page,
        per_page=per_page,
    )


def graph_response(request: Request, blob: bytes, headers: dict[str, str] | None = None) -> Response:
    """The stored gzip bytes as they are when the client takes gzip (every browser does), so a large graph
    costs neither a decompression nor a re-compression per read."""
    headers = {"Vary": "Accept-Encoding", **(headers or {})}
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        return Response(blob, media_type="application/json", headers={**headers, "Content-Encoding": "gzip"})
    return Response(gzip.decompress(blob), media_type="application/json", headers=headers)


@router.get("/{slug}", responses={200: {"description": "graph JSON {metadata, qParams, nodes, links}"}})
def get_graph(slug: str, request: Request, svc: ServicesDep) -> Response:
    blob = svc.store.graphs.blob(slug)
    if blob is None:
        raise not_found(slug)
    return graph_response(request, blob)


@router.get("/{slug}/export", responses={200: {"description": "graph JSON as an attachment"}})
def export_graph(slug: str, request: Request, svc: ServicesDep) -> Response:
    blob = svc.store.graphs.blob(slug)
    if blob is None:
        raise not_found(slug)
    return graph_response(request, blob, {"Content-Disposition": f'attachment; filename="{slug}.json"'})


@router.delete("/{slug}", status_code=204)
def delete_graph(slug: str, svc: ServicesDep, who: PrincipalDep) -> Response:
    """Only its owner or an admin; the slug is never given to another graph."""
    exists, owner = svc.store.graphs.owner(slug)
    if not exists:
        raise not_found(slug)
    if not who.may_change(owner):
        raise forbidden(f"graph {slug!r}")
    if not svc.store.graphs.delete(slug, by=who.user_id):
        raise not_found(slug)
    return Response(status_code=204)
