"""POST /api/interventions: ablate, scale or inject features; top tokens and continuation before/after."""

from __future__ import annotations

from fastapi import APIRouter

from circuitboard.api.deps import ServicesDep
from circuitboard.api.errors import field_error
from circuitboard.api.params import check_intervention, check_positions
from circuitboard.api.schemas import InterventionIn
from circuitboard.engine.types import InterventionResult

router = APIRouter(prefix="/api", tags=["interventions"])


@router.post("/interventions", response_model=InterventionResult)
def intervene(body: InterventionIn, svc: ServicesDep) -> InterventionResult:
    check_intervention(body, svc.settings, svc.host.info)
    check_positions(body, len(svc.host.prompt_ids(body.prompt)))
    try:
        return svc.host.intervene(body, svc.settings.engine_wait_s)
    except ValueError as e:  # the engine rejecting an input it alone can judge
        raise field_error(("body", "interventions"), f"interventions: {e}") from None
