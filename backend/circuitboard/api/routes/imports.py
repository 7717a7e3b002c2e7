"""POST /api/graphs/import: store a circuit-tracer / Neuronpedia graph file like a traced one."""

from __future__ import annotations

import hashlib
import json

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from circuitboard.api.deps import Services, services
from circuitboard.api.graph_file import validate_graph_file
from circuitboard.api.routes.graphs import graph_url
from circuitboard.api.schemas import ImportedGraph
from circuitboard.api.uploads import read_json_upload
from circuitboard.store.slugs import is_valid_slug

router = APIRouter(prefix="/api/graphs", tags=["graphs"])


@router.post(
    "/import",
    status_code=201,
    response_model=ImportedGraph,
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
                },
                "application/json": {"schema": {"type": "object"}},
            }
        }
    },
)
async def import_graph(request: Request, svc: Services = Depends(services)) -> JSONResponse:
    data = await read_json_upload(request, svc.settings.max_upload_bytes)
    # Validation, hashing and compression of a large file are CPU work: keep them off the event loop.
    summary = await run_in_threadpool(_store, svc, data)
    out = ImportedGraph(**summary.model_dump(), graph_url=graph_url(summary.slug))
    return JSONResponse(out.model_dump(mode="json"), status_code=201)


def _store(svc: Services, data: object):
    valid = validate_graph_file(data)
    digest = hashlib.sha256(json.dumps(valid.graph, sort_keys=True).encode()).hexdigest()
    return svc.store.graphs.add(
        valid.graph,
        prompt=valid.prompt,
        model=valid.model,
        transcoders=valid.transcoders,
        source="imported",
        digest=digest,
        requested_slug=valid.slug if valid.slug and is_valid_slug(valid.slug) else None,
    )
