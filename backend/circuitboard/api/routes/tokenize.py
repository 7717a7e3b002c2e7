"""POST /api/tokenize: tokens of a prompt and the top next tokens, for the trace form's live preview."""

from __future__ import annotations

from fastapi import APIRouter

from circuitboard.api.deps import ServicesDep
from circuitboard.api.params import check_prompt
from circuitboard.api.schemas import TokenizeIn, TokenizeOut

router = APIRouter(prefix="/api", tags=["graphs"])


@router.post("/tokenize", response_model=TokenizeOut)
def tokenize(body: TokenizeIn, svc: ServicesDep) -> TokenizeOut:
    # A sync route: FastAPI runs it in a thread, so waiting for the model never blocks the event loop.
    check_prompt(body.prompt, svc.settings)
    result, busy = svc.host.tokenize(body.prompt, body.top_k, svc.settings.preview_wait_s)
    return TokenizeOut(
        tokens=result.tokens,
        top_next=result.top_next,
        n_tokens=len(result.tokens),
        too_long=len(result.tokens) > svc.settings.max_prompt_tokens,
        busy=busy,
    )
