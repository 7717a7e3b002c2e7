"""Circuit analysis of stored graphs: suggested supernodes, validation by intervention, graph diffs.

The maths is the engine's (engine/supernodes.py, engine/validation.py, engine/diff.py); this module gathers
its inputs: the stored graphs, the atlas's labels and top tokens, and the engine for decoder directions.
Validation runs the model many times, so it is a job (kind "validate") in the queue of the preset whose model
traced the graph: 202 with the job, its progress on /api/jobs/{id}/events, its result at /api/jobs/{id}/result.
"""

from __future__ import annotations

from typing import Any

import torch
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError

from circuitboard.api.auth import PrincipalDep
from circuitboard.api.deps import ServicesDep, get_atlas
from circuitboard.api.errors import field_error
from circuitboard.api.limits import rate_limited
from circuitboard.api.schemas import JobStarted
from circuitboard.atlas.records import feature_record
from circuitboard.atlas.store import AtlasStore
from circuitboard.engine.diff import GraphDiff, GraphsDiffer, diff_graphs
from circuitboard.engine.linkgraph import GraphShapeError, LinkGraph
from circuitboard.engine.supernodes import Evidence, SuggestRequest, SuggestResult, candidate_nodes, suggest
from circuitboard.engine.validation import ValidateRequest, check_request
from circuitboard.jobs import EngineBusy, EngineUnavailable, ValidateJob

router = APIRouter(prefix="/api/graphs", tags=["analysis"])

TOP_TOKENS = 10  # per side (output logits, input tokens) of the atlas record


# ------------------------------------------------------------------------------------------------ routes


@router.post("/{slug}/supernodes/suggest", response_model=SuggestResult)
def suggest_supernodes(slug: str, body: SuggestRequest, request: Request, svc: ServicesDep) -> SuggestResult:
    graph = _stored(svc, slug)
    nodes = candidate_nodes(graph, body)
    coords = graph.feature_coords(nodes)
    pairs = [(layer, index) for layer, index, _ in coords]
    labels, tokens = _atlas_evidence(request, pairs)
    evidence = Evidence(decoder=_decoders(svc, graph, pairs), top_tokens=tokens, labels=labels)
    return suggest(graph, nodes, evidence, body.granularity)


@router.post(
    "/{slug}/validate",
    status_code=202,
    response_model=JobStarted,
    dependencies=[rate_limited("interventions")],
)
def validate_supernodes(slug: str, body: ValidateRequest, svc: ServicesDep, who: PrincipalDep) -> JobStarted:
    """Queue a validation of the graph's supernodes. Its input is checked here, before it is queued: a 422
    names the field; 404 no graph, 409 a graph of another model, 503 no engine (or no worker) for it."""
    data = _stored_json(svc, slug)
    graph = _parse(slug, data)
    preset = _preset_for(svc, graph)
    info = svc.jobs.transport.host(preset).info
    try:
        check_request(graph, body, info.vocab_size if info is not None else 0)
    except ValueError as e:  # names the field: supernodes.i.j, targets
        raise _field_error(str(e)) from None
    job = svc.jobs.submit_validation(ValidateJob(slug=slug, body=body), graph.prompt, who.user_id, preset)
    return JobStarted(job=job)


@router.get("/{a}/diff/{b}", response_model=GraphDiff)
def diff(
    a: str,
    b: str,
    svc: ServicesDep,
    tolerance: float = Query(0.01, ge=0.0, le=1.0, description="relative change below which a match is shared"),
    include_shared: bool = Query(False, alias="all", description="also list shared nodes and links (to draw all)"),
) -> GraphDiff:
    graph_a, graph_b = _stored(svc, a), _stored(svc, b)
    try:
        return diff_graphs(graph_a, graph_b, tolerance=tolerance, include_shared=include_shared)
    except GraphsDiffer as e:
        raise HTTPException(409, str(e)) from None


# ------------------------------------------------------------------------------------------------ inputs


def _not_found(slug: str) -> HTTPException:
    return HTTPException(404, f"slug: no graph {slug!r}")


def _stored_json(svc: ServicesDep, slug: str) -> dict[str, Any]:
    data = svc.store.graphs.get(slug)
    if data is None:
        raise _not_found(slug)
    return data


def _stored(svc: ServicesDep, slug: str) -> LinkGraph:
    return _parse(slug, _stored_json(svc, slug))


def _parse(slug: str, data: dict[str, Any]) -> LinkGraph:
    try:
        return LinkGraph.from_json(data)
    except GraphShapeError as e:
        raise HTTPException(422, f"graph {slug!r}: {e}") from None


def _preset_for(svc: ServicesDep, graph: LinkGraph) -> str | None:
    """The preset whose model traced the graph and can run it now (None: the server's own). Raises
    EngineUnavailable (503) while the server's own preset has no engine, else 409 for another model's graph."""
    names = graph.model_names()
    for preset in svc.jobs.transport.presets():
        if preset.model is not None and (preset.model.model_name, preset.model.transcoder_name) == names:
            return preset.name
    svc.host.names()  # 503 while loading, without a model, or with no worker for the preset
    model, transcoders = names
    raise HTTPException(409, f"graph: traced with {model!r} / {transcoders!r}, not the loaded model")


def _decoders(svc: ServicesDep, graph: LinkGraph, pairs: list[tuple[int, int]]) -> torch.Tensor | None:
    """Decoder directions from the loaded engine when it traced the graph; None otherwise (suggestions then
    use the graph and the atlas alone)."""
    if not pairs or svc.host.info is None:
        return None
    try:
        if svc.host.names() != graph.model_names():
            return None
        return svc.host.feature_directions(pairs)
    except (EngineUnavailable, EngineBusy):
        return None


def _atlas_evidence(
    request: Request, pairs: list[tuple[int, int]]
) -> tuple[list[str | None] | None, list[set[str]] | None]:
    """(labels, top tokens) of the features from the atlas; (None, None) without one."""
    try:
        store: AtlasStore = get_atlas(request)
    except HTTPException:
        return None, None
    return atlas_evidence(store, pairs)


def atlas_evidence(store: AtlasStore, pairs: list[tuple[int, int]]) -> tuple[list[str | None], list[set[str]]]:
    """(label, top tokens: output logits and input tokens, lower-cased) of each (layer, index) feature."""
    found = store.labels_for(pairs)
    labels: list[str | None] = [found.get(p) for p in pairs]
    tokens = []
    for layer, index in pairs:
        rec = feature_record(store, layer, index) or {}
        texts = [t["text"] for t in rec.get("top_logits", [])[:TOP_TOKENS]]
        texts += [t["text"] for t in rec.get("top_input_tokens", [])[:TOP_TOKENS]]
        tokens.append({t.strip().lower() for t in texts if t.strip()})
    return labels, tokens


def _field_error(message: str) -> RequestValidationError:
    """A 422 whose location is the message's `field.i.j:` prefix."""
    head = message.split(":", 1)[0]
    loc: tuple[str | int, ...] = ("body", *(int(p) if p.isdigit() else p for p in head.split(".")))
    return field_error(loc, message)
