"""POST /api/graphs/import: store a circuit-tracer / Neuronpedia graph file like a traced one."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from circuitboard.api.auth import PrincipalDep
from circuitboard.api.deps import Services, ServicesDep
from circuitboard.api.errors import field_error
from circuitboard.api.limits import rate_limited
from circuitboard.api.routes.graphs import graph_url
from circuitboard.api.schemas import ImportedGraph
from circuitboard.api.uploads import parse_json_document, read_upload
from circuitboard.config import Settings
from circuitboard.engine.export import GraphFile, GraphFormatError, read_graph_file
from circuitboard.store.records import GraphSummary
from circuitboard.store.slugs import is_valid_slug

router = APIRouter(prefix="/api/graphs", tags=["graphs"])

_FIELD = "file"  # the multipart field of the upload, named in every error


@router.post(
    "/import",
    status_code=201,
    response_model=ImportedGraph,
    dependencies=[rate_limited("imports")],
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
async def import_graph(request: Request, svc: ServicesDep, who: PrincipalDep) -> JSONResponse:
    raw = await read_upload(request, svc.settings.max_upload_bytes, _FIELD)
    # Parsing, validation, hashing and compression of a large file are CPU work: keep them off the event loop.
    summary = await run_in_threadpool(_store, svc, raw, who.user_id)
    out = ImportedGraph(**summary.model_dump(), graph_url=graph_url(summary.slug))
    return JSONResponse(out.model_dump(mode="json"), status_code=201)


def _check_counts(counts: dict[str, int], settings: Settings) -> None:
    """At most Settings.max_import_nodes nodes and max_import_links links (memory grows with them, not bytes)."""
    caps = {"nodes": settings.max_import_nodes, "links": settings.max_import_links}
    for part, n in counts.items():
        if n > caps[part]:
            raise HTTPException(413, f"{_FIELD}.{part}: {n} {part}, more than the limit of {caps[part]}")


def _parsed(raw: bytes, settings: Settings) -> Any:
    # Every node has a "node_id" key and every link a "source" key: counting them in the bytes bounds the
    # file's size in nodes and links before anything is parsed (an escaped key in a string is not counted).
    _check_counts({"nodes": raw.count(b'"node_id"'), "links": raw.count(b'"source"')}, settings)
    data = parse_json_document(raw, _FIELD)
    if isinstance(data, dict):
        _check_counts({p: len(v) for p in ("nodes", "links") if isinstance(v := data.get(p), list)}, settings)
    return data


def _validated(data: Any) -> GraphFile:
    """The graph file, or a 422 whose `loc` names the upload field and the path inside the file."""
    try:
        return read_graph_file(data)
    except GraphFormatError as e:
        raise field_error(("body", _FIELD, *e.loc), f"{_FIELD}: {e.first}", e.value) from None


def _store(svc: Services, raw: bytes, owner_id: int | None) -> GraphSummary:
    valid = _validated(_parsed(raw, svc.settings))
    digest = hashlib.sha256(json.dumps(valid.graph, sort_keys=True).encode()).hexdigest()
    return svc.store.graphs.add(
        valid.graph,
        prompt=valid.prompt,
        model=valid.model,
        transcoders=valid.transcoders,
        source="imported",
        digest=digest,
        requested_slug=valid.slug if valid.slug and is_valid_slug(valid.slug) else None,
        owner_id=owner_id,
    )
