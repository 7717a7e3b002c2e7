"""POST /api/tokenize: tokens of a prompt and the top next tokens, for the trace form's live preview."""

from __future__ import annotations

from fastapi import APIRouter

from circuitboard.api.deps import Services, ServicesDep
from circuitboard.api.limits import rate_limited
from circuitboard.api.params import check_prompt, check_token_list
from circuitboard.api.schemas import TokenizeIn, TokenizeOut

router = APIRouter(prefix="/api", tags=["graphs"])


@router.post("/tokenize", response_model=TokenizeOut, dependencies=[rate_limited("tokenize")])
async def tokenize(body: TokenizeIn, svc: ServicesDep) -> TokenizeOut:
    # On the previews' own threads: waiting for the model never blocks the event loop or a request thread.
    return await svc.previews.run(_tokenize, body, svc)


def _tokenize(body: TokenizeIn, svc: Services) -> TokenizeOut:
    check_prompt(body.prompt, svc.settings)
    targets = body.targets or []
    check_token_list(targets, "targets", svc.settings.max_target_tokens)
    result, busy = svc.host.tokenize(body.prompt, body.top_k, svc.settings.preview_wait_s, targets)
    return TokenizeOut(
        tokens=result.tokens,
        top_next=result.top_next,
        targets=result.targets,
        n_tokens=len(result.tokens),
        too_long=len(result.tokens) > svc.settings.max_prompt_tokens,
        busy=busy,
    )
