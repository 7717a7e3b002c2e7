"""Atlas builds as jobs: POST /api/presets/{preset}/atlas queues a build of the preset's feature atlas on a host
that holds the preset (this server's worker thread, or one of the preset's `circuitboard worker`s): 202 with the
job, its progress (phase "atlas", corpus tokens done of total) on /api/jobs/{id}/events, its AtlasSummary at
/api/jobs/{id}/result. The feature routes read the new atlas as soon as it is written (api/deps.py)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi import Path as PathParam

from circuitboard.api.auth import PrincipalDep
from circuitboard.api.deps import ServicesDep
from circuitboard.api.errors import field_error
from circuitboard.api.schemas import JobStarted
from circuitboard.jobs import AtlasBusy, AtlasJob

router = APIRouter(prefix="/api/presets", tags=["atlas"])


@router.post("/{preset}/atlas", status_code=202, response_model=JobStarted)
def build_atlas(
    svc: ServicesDep,
    who: PrincipalDep,
    preset: str = PathParam(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$"),
    body: AtlasJob | None = None,
) -> JobStarted:
    """Admins only (on a single-user server, the one user). The same request while one is queued or running
    answers that job; 409 while a build with other parameters is under way, 503 when no worker serves the preset,
    422 naming the field for a bad parameter (a layer the model does not have). No body: every default."""
    if not who.is_admin:
        raise HTTPException(403, "atlas: only an admin may build a preset's atlas")
    body = body or AtlasJob()
    info = svc.jobs.transport.host(preset).info
    if body.layers is not None and info is not None:
        for i, layer in enumerate(body.layers):
            if layer >= info.n_layers:
                msg = f"layers.{i}: the model has {info.n_layers} layers (0 to {info.n_layers - 1}), not {layer}"
                raise field_error(("body", "layers", i), msg, layer)
    try:
        job = svc.jobs.submit_atlas(body, who.user_id, preset)
    except AtlasBusy as e:
        raise HTTPException(409, str(e)) from None
    return JobStarted(job=job)
