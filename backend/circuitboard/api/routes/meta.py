"""GET /api/health and GET /api/config."""

from __future__ import annotations

from functools import cache
from typing import Literal

from fastapi import APIRouter

from circuitboard import __version__
from circuitboard.api.deps import Services, ServicesDep
from circuitboard.api.schemas import ConfigOut, HealthOut, Limits, ParamRanges

router = APIRouter(prefix="/api", tags=["meta"])


@cache
def _cuda_available() -> bool:
    import torch  # deferred: only needed when no engine says which device it runs on

    return torch.cuda.is_available()


def device_kind(svc: Services) -> Literal["cuda", "cpu"]:
    info = svc.host.info
    device = (info.device if info is not None else "") or svc.settings.device or ""
    if not device:
        device = "cuda" if _cuda_available() else "cpu"
    return "cuda" if device.startswith("cuda") else "cpu"


@router.get("/health", response_model=HealthOut)
def health(svc: ServicesDep) -> HealthOut:
    return HealthOut(version=__version__, device=device_kind(svc), engine=svc.host.state)


@router.get("/config", response_model=ConfigOut)
def config(svc: ServicesDep) -> ConfigOut:
    s = svc.settings
    info = svc.host.info
    return ConfigOut(
        model=info.model_dump(mode="json") if info is not None else None,
        transcoders=info.transcoder_name if info is not None else None,
        device=(info.device if info is not None else "") or device_kind(svc),
        engine=svc.host.state,
        engine_error=svc.host.error,
        limits=Limits.model_validate(s.model_dump(include=set(Limits.model_fields))),
        params=ParamRanges.model_validate({name: rng.model_dump() for name, rng in svc.ranges.items()}),
        interventions=s.interventions,
        rate_limits=s.rate_limits,
        auth="required" if s.auth_required else "off",
        queue="redis" if s.queue_url else "local",
        presets=svc.jobs.transport.presets(),
    )
