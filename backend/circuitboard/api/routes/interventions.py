"""POST /api/interventions: ablate, scale or inject features; top tokens and continuation before/after."""

from __future__ import annotations

from fastapi import APIRouter

from circuitboard.api.deps import Services, ServicesDep
from circuitboard.api.errors import field_error
from circuitboard.api.limits import rate_limited
from circuitboard.api.params import check_intervention, check_positions
from circuitboard.api.schemas import InterventionIn
from circuitboard.engine.types import InterventionResult

router = APIRouter(prefix="/api", tags=["interventions"])


@router.post("/interventions", response_model=InterventionResult, dependencies=[rate_limited("interventions")])
async def intervene(body: InterventionIn, svc: ServicesDep) -> InterventionResult:
    # On the interventions' own threads: waiting for the model must never hold a request thread.
    return await svc.interventions.run(_intervene, body, svc)


def _intervene(body: InterventionIn, svc: Services) -> InterventionResult:
    check_intervention(body, svc.settings, svc.host.info)
    check_positions(body, len(svc.host.prompt_ids(body.prompt)))
    svc.host.check_tokens(body.watch, "watch")  # tokenizer only: a bad token never waits for the model
    try:
        return svc.host.intervene(body, svc.settings.engine_wait_s)
    except ValueError as e:  # the engine rejecting an input it alone can judge
        raise field_error(("body", "interventions"), f"interventions: {e}") from None
