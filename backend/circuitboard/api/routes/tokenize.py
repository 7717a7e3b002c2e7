"""POST /api/tokenize: tokens of a prompt and the top next tokens, for the trace form's live preview."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from circuitboard.api.deps import Services, services
from circuitboard.api.params import check_prompt
from circuitboard.api.schemas import TokenizeIn, TokenizeOut, TokenOut, TokenProbOut

router = APIRouter(prefix="/api", tags=["graphs"])


@router.post("/tokenize", response_model=TokenizeOut)
def tokenize(body: TokenizeIn, svc: Services = Depends(services)) -> TokenizeOut:
    # A sync route: FastAPI runs it in a thread, so waiting for the model never blocks the event loop.
    check_prompt(body.prompt, svc.settings)
    result, busy = svc.host.tokenize(body.prompt, body.top_k, svc.settings.preview_wait_s)
    tokens = [TokenOut(id=int(t.id), text=str(t.text)) for t in result.tokens]
    top = [TokenProbOut(id=int(t.id), text=str(t.text), prob=float(t.prob)) for t in result.top_next]
    return TokenizeOut(
        tokens=tokens,
        top_next=top,
        n_tokens=len(tokens),
        too_long=len(tokens) > svc.settings.max_prompt_tokens,
        busy=busy,
    )
