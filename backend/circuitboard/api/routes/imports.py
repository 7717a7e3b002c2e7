"""POST /api/graphs/import: store a circuit-tracer / Neuronpedia graph file like a traced one."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from circuitboard.api.deps import Services, ServicesDep
from circuitboard.api.errors import field_error
from circuitboard.api.routes.graphs import graph_url
from circuitboard.api.schemas import ImportedGraph
from circuitboard.api.uploads import read_json_upload
from circuitboard.engine.export import GraphFile, GraphFormatError, read_graph_file
from circuitboard.store.records import GraphSummary
from circuitboard.store.slugs import is_valid_slug

router = APIRouter(prefix="/api/graphs", tags=["graphs"])

_FIELD = "file"  # the multipart field of the upload, named in every error


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
async def import_graph(request: Request, svc: ServicesDep) -> JSONResponse:
    data = await read_json_upload(request, svc.settings.max_upload_bytes, _FIELD)
    # Validation, hashing and compression of a large file are CPU work: keep them off the event loop.
    summary = await run_in_threadpool(_store, svc, data)
    out = ImportedGraph(**summary.model_dump(), graph_url=graph_url(summary.slug))
    return JSONResponse(out.model_dump(mode="json"), status_code=201)


def _validated(data: Any) -> GraphFile:
    """The graph file, or a 422 whose `loc` names the upload field and the path inside the file."""
    try:
        return read_graph_file(data)
    except GraphFormatError as e:
        raise field_error(("body", _FIELD, *e.loc), f"{_FIELD}: {e.first}", e.value) from None


def _store(svc: Services, data: Any) -> GraphSummary:
    valid = _validated(data)
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
