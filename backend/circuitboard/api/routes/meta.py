"""GET /api/health and GET /api/config."""

from __future__ import annotations

from functools import cache
from typing import Literal

from fastapi import APIRouter, Depends

from circuitboard import __version__
from circuitboard.api.deps import Services, services
from circuitboard.api.schemas import ConfigOut, HealthOut, Limits

router = APIRouter(prefix="/api", tags=["meta"])


@cache
def _cuda_available() -> bool:
    import torch  # deferred: only needed when no engine says which device it runs on

    return torch.cuda.is_available()


def device_kind(svc: Services) -> Literal["cuda", "cpu"]:
    info = svc.host.info
    device = str(getattr(info, "device", None) or svc.settings.device or "")
    if not device:
        device = "cuda" if _cuda_available() else "cpu"
    return "cuda" if device.startswith("cuda") else "cpu"


@router.get("/health", response_model=HealthOut)
def health(svc: Services = Depends(services)) -> HealthOut:
    return HealthOut(version=__version__, device=device_kind(svc), engine=svc.host.state)


@router.get("/config", response_model=ConfigOut)
def config(svc: Services = Depends(services)) -> ConfigOut:
    s = svc.settings
    info = svc.host.info
    return ConfigOut(
        model=info.model_dump(mode="json") if info is not None else None,
        transcoders=str(info.transcoder_name) if info is not None else None,
        device=str(getattr(info, "device", None) or device_kind(svc)),
        engine=svc.host.state,
        engine_error=svc.host.error,
        limits=Limits(
            max_prompt_tokens=s.max_prompt_tokens,
            max_prompt_chars=s.max_prompt_chars,
            max_queue=s.max_queue,
            max_upload_bytes=s.max_upload_bytes,
            max_target_tokens=s.max_target_tokens,
        ),
        params=s.params,
        interventions=s.interventions,
    )
