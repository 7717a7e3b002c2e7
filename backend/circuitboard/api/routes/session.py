"""Signing in on a shared server: POST /api/session (an API token or a name and password) sets an HttpOnly,
SameSite=Strict session cookie and returns the CSRF token the page sends with every change; GET says who is
signed in (and whether anyone needs to be); DELETE signs out."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool

from circuitboard.api.auth import SESSION_COOKIE, Principal, PrincipalDep
from circuitboard.api.deps import ServicesDep
from circuitboard.api.schemas import SessionOut, SignIn, UserOut
from circuitboard.store.records import UserRecord
from circuitboard.store.users import SESSION_TTL

router = APIRouter(prefix="/api", tags=["session"])


def _out(svc: ServicesDep, who: Principal) -> SessionOut:
    user = None if who.user is None else UserOut(name=who.user.name, is_admin=who.user.is_admin)
    auth: Literal["required", "off"] = "required" if svc.settings.auth_required else "off"
    return SessionOut(auth=auth, user=user, via=who.via, csrf_token=who.csrf)


@router.get("/session", response_model=SessionOut)
def get_session(svc: ServicesDep, who: PrincipalDep) -> SessionOut:
    return _out(svc, who)


def _check(svc: ServicesDep, body: SignIn) -> UserRecord | None:
    if body.token is not None:
        return svc.store.users.by_token(body.token)
    assert body.name is not None and body.password is not None
    return svc.store.users.by_password(body.name, body.password)


@router.post("/session", response_model=SessionOut)
async def sign_in(body: SignIn, request: Request, response: Response, svc: ServicesDep) -> SessionOut:
    if not svc.settings.auth_required:
        raise HTTPException(409, "auth: this is a single-user server; nobody needs to sign in")
    user = await run_in_threadpool(_check, svc, body)  # argon2: off the event loop
    if user is None:
        raise HTTPException(401, "auth: unknown token, or wrong name or password")
    session_id, csrf = await run_in_threadpool(svc.store.users.open_session, user.id)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(SESSION_TTL.total_seconds()),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return _out(svc, Principal(via="session", user=user, csrf=csrf))


@router.delete("/session", status_code=204)
def sign_out(request: Request, svc: ServicesDep) -> Response:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        svc.store.users.close_session(session_id)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
