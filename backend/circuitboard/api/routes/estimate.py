"""POST /api/estimate: the predicted time and peak memory of a graph request, and whether this server takes it.

The same estimate decides whether POST /api/graphs queues the request or refuses it (`refuse_unfit`), so what the
page shows next to the trace button is what the server will do.
"""

from __future__ import annotations

from fastapi import APIRouter

from circuitboard.api.deps import Services, ServicesDep
from circuitboard.api.errors import field_error
from circuitboard.api.limits import rate_limited
from circuitboard.api.params import graph_request
from circuitboard.api.schemas import EstimateOut, GraphCreate
from circuitboard.engine.estimate import TraceLimits, engine_dims, estimate_trace
from circuitboard.jobs import GraphRequest, PromptTooLong

router = APIRouter(prefix="/api", tags=["graphs"])


def trace_limits(svc: Services) -> TraceLimits:
    return TraceLimits(seconds=svc.settings.max_trace_seconds, bytes=svc.settings.max_trace_bytes)


def estimate_request(req: GraphRequest, svc: Services) -> EstimateOut:
    """The estimate of `req` on the loaded engine (EngineUnavailable, a 503, without one). A prompt past
    max_prompt_tokens is estimated all the same, and does not fit."""
    engine = svc.host.require()
    too_long: str | None = None
    try:
        n_tokens = len(svc.host.prompt_ids(req.prompt))
    except PromptTooLong as e:
        n_tokens, too_long = e.n_tokens, str(e)
    est = estimate_trace(n_tokens, req.params(), engine_dims(engine))
    limits = trace_limits(svc)
    reason = too_long or est.refusal(limits)
    return EstimateOut(
        tokens=n_tokens,
        seconds=est.seconds,
        peak_bytes=est.peak_bytes,
        fits=reason is None,
        limit=limits,
        reason=reason,
    )


def refuse_unfit(req: GraphRequest, svc: Services) -> None:
    """A 422 naming `prompt` when the trace would pass the server's time or memory limit. While the model loads
    there is nothing to size it by, and the request goes on to the queue unchecked."""
    if svc.host.state != "ready":
        return
    out = estimate_request(req, svc)
    if out.reason is not None:
        raise field_error(("body", "prompt"), out.reason, out.tokens)


@router.post("/estimate", response_model=EstimateOut, dependencies=[rate_limited("tokenize")])
def estimate(body: GraphCreate, svc: ServicesDep) -> EstimateOut:
    """Takes the body of POST /api/graphs; bad values are the same 4xx, naming the field."""
    return estimate_request(graph_request(body, svc.settings, svc.ranges), svc)
