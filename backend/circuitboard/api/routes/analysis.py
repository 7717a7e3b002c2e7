"""Circuit analysis of stored graphs: suggested supernodes, validation by intervention, graph diffs.

The maths is the engine's (engine/supernodes.py, engine/validation.py, engine/diff.py); this module gathers
its inputs: the stored graphs, the atlas's labels and top tokens, and the engine for decoder directions and
interventions. Validation runs the model, so it holds the engine host's model lock, synchronously: a request
waits at most `engine_wait_s` for a running job, then answers 503.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

import torch
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError

from circuitboard.api.deps import ServicesDep, get_atlas
from circuitboard.api.errors import field_error
from circuitboard.atlas.records import feature_record
from circuitboard.atlas.store import AtlasStore
from circuitboard.engine.diff import GraphDiff, GraphsDiffer, diff_graphs
from circuitboard.engine.linkgraph import GraphShapeError, LinkGraph
from circuitboard.engine.supernodes import Evidence, SuggestRequest, SuggestResult, candidate_nodes, suggest
from circuitboard.engine.validation import ValidateRequest, ValidationResult
from circuitboard.jobs import EngineBusy
from circuitboard.jobs.host import EngineAPI

router = APIRouter(prefix="/api/graphs", tags=["analysis"])

TOP_TOKENS = 10  # per side (output logits, input tokens) of the atlas record


@runtime_checkable
class AnalysisEngine(Protocol):
    """What these routes ask of the engine beyond EngineAPI (circuitboard.engine.session.Engine has both)."""

    def feature_directions(self, features: list[tuple[int, int]]) -> torch.Tensor: ...

    def validate(self, graph: dict[str, Any], req: ValidateRequest) -> ValidationResult: ...


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


@router.post("/{slug}/validate", response_model=ValidationResult)
def validate_supernodes(slug: str, body: ValidateRequest, svc: ServicesDep) -> ValidationResult:
    data = _stored_json(svc, slug)
    engine = _analysis_engine(svc, _parse(slug, data))
    with _model_lock(svc):
        try:
            return engine.validate(data, body)
        except ValueError as e:  # names the field: supernodes.i.j, targets, graph
            raise _field_error(str(e)) from None


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


def _engine_for(svc: ServicesDep, graph: LinkGraph) -> EngineAPI | None:
    """The loaded engine when it is the one the graph was traced with, else None."""
    if svc.host.info is None:
        return None
    engine = svc.host.require()
    return engine if svc.host.names() == graph.model_names() else None


def _decoders(svc: ServicesDep, graph: LinkGraph, pairs: list[tuple[int, int]]) -> torch.Tensor | None:
    # Reading decoder rows runs no forward pass (no hooks), so it does not wait for the model lock.
    engine = _engine_for(svc, graph)
    if not pairs or not isinstance(engine, AnalysisEngine):
        return None
    return engine.feature_directions(pairs)


def _analysis_engine(svc: ServicesDep, graph: LinkGraph) -> AnalysisEngine:
    svc.host.require()  # 503 while loading or without a model
    engine = _engine_for(svc, graph)
    if engine is None:
        model, transcoders = graph.model_names()
        raise HTTPException(409, f"graph: traced with {model!r} / {transcoders!r}, not the loaded model")
    if not isinstance(engine, AnalysisEngine):
        raise HTTPException(501, "engine: this engine cannot run validations")
    return engine


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


@contextmanager
def _model_lock(svc: ServicesDep) -> Iterator[None]:
    """The engine host's one model lock, waited for as an intervention waits (then 503)."""
    if not svc.host.model_lock.acquire(timeout=svc.settings.engine_wait_s):
        raise EngineBusy("engine: busy computing a graph; try again when the job has finished")
    try:
        yield
    finally:
        svc.host.model_lock.release()


def _field_error(message: str) -> RequestValidationError:
    """A 422 whose location is the message's `field.i.j:` prefix."""
    head = message.split(":", 1)[0]
    loc: tuple[str | int, ...] = ("body", *(int(p) if p.isdigit() else p for p in head.split(".")))
    return field_error(loc, message)
