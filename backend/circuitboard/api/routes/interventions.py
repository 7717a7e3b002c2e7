"""POST /api/interventions: ablate, scale or inject features; top tokens and continuation before/after."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from circuitboard.api.deps import Services, services
from circuitboard.api.errors import field_error
from circuitboard.api.params import check_intervention
from circuitboard.api.schemas import InterventionIn, InterventionOut
from circuitboard.jobs import PromptTooLong
from circuitboard.jobs.convert import intervention_request

router = APIRouter(prefix="/api", tags=["interventions"])


@router.post("/interventions", response_model=InterventionOut)
def intervene(body: InterventionIn, svc: Services = Depends(services)) -> InterventionOut:
    s = svc.settings
    check_intervention(body, s, svc.host.info)
    n_tokens = len(svc.host.token_ids(body.prompt))
    if n_tokens > s.max_prompt_tokens:
        raise PromptTooLong(n_tokens, s.max_prompt_tokens)
    for i, iv in enumerate(body.interventions):
        if iv.position is not None and iv.position >= n_tokens:
            raise field_error(
                ("body", "interventions", i, "position"),
                f"interventions.{i}.position: the prompt has {n_tokens} tokens (positions 0-{n_tokens - 1})",
                iv.position,
            )
    req = intervention_request(body.model_dump())
    try:
        result = svc.host.intervene(req, s.engine_wait_s)
    except ValueError as e:  # the engine rejecting an input it alone can judge
        raise field_error(("body", "interventions"), f"interventions: {e}") from None
    return InterventionOut.model_validate(result.model_dump())
