"""The request guard, in front of every route: browser security and who is asking.

- Host headers outside Settings.trusted_hosts are refused (Starlette's TrustedHostMiddleware, installed beside
  this one): a DNS-rebinding page cannot talk to a server on 127.0.0.1.
- A state-changing request (POST, PUT, PATCH, DELETE) from a browser must come from the server's own origin
  (Origin, else Referer, else Sec-Fetch-Site), unless it carries a bearer token, which no other site can make a
  browser send. A cookie session must also send its CSRF token in `X-CSRF-Token`.
- In shared mode every API call but health and sign-in needs a user: 401 otherwise.
- Every response gets a CSP without inline scripts, nosniff and frame-ancestors 'none'.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

from circuitboard.api.auth import ANONYMOUS, CSRF_HEADER, LOCAL, SESSION_COOKIE, Principal, bearer_token, resolve
from circuitboard.store.credentials import same

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # style attributes (canvas panels, Swagger UI); never scripts
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",  # ReDoc's search worker
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What an anonymous caller of a shared server may reach under /api (the page itself and /docs are public).
_PUBLIC_API = frozenset({("GET", "/api/health"), ("GET", "/api/session"), ("POST", "/api/session")})


class RequestGuard:
    def __init__(self, app: ASGIApp, *, auth_required: bool) -> None:
        self.app = app
        self.auth_required = auth_required

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        headers = Headers(scope=scope)
        method, path = scope["method"], scope["path"]
        token = bearer_token(headers.get("authorization"))
        foreign = None if token is not None or method not in _UNSAFE else cross_origin(scope, headers)
        if foreign is not None:
            await _answer(send, 403, foreign)
            return
        who = await self._principal(scope, headers, token)
        refusal = self._refusal(who, method, path, headers)
        if refusal is not None:
            status, message = refusal
            await _answer(send, status, message, {"www-authenticate": "Bearer"} if status == 401 else None)
            return
        scope.setdefault("state", {})["principal"] = who
        await self.app(scope, receive, send)

    async def _principal(self, scope: Scope, headers: Headers, token: str | None) -> Principal:
        if not self.auth_required:
            return LOCAL
        session_id = _cookie(headers, SESSION_COOKIE)
        if token is None and session_id is None:
            return ANONYMOUS
        store = scope["app"].state.services.store
        return await run_in_threadpool(resolve, store, token, session_id)

    def _refusal(self, who: Principal, method: str, path: str, headers: Headers) -> tuple[int, str] | None:
        if not path.startswith("/api/") or (method, path) in _PUBLIC_API:
            return None
        if not who.signed_in:
            return 401, "auth: sign in first (an API token as `Authorization: Bearer ...`, or POST /api/session)"
        if who.via == "session" and method in _UNSAFE:
            sent = headers.get(CSRF_HEADER)
            if sent is None or who.csrf is None or not same(sent, who.csrf):
                return 403, "csrf: send the session's CSRF token (from POST /api/session) in X-CSRF-Token"
        return None


def cross_origin(scope: Scope, headers: Headers) -> str | None:
    """Why a state-changing browser request does not come from this server's own pages, or None when it does
    (or when no browser sent it: a request without Origin, Referer and Sec-Fetch-Site is a script's)."""
    own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
    origin = headers.get("origin")
    if origin is not None:
        return None if origin == own else f"origin: requests from {origin!r} may not change anything here"
    referer = headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        if f"{parts.scheme}://{parts.netloc}" != own:
            return "origin: requests from another site may not change anything here"
        return None
    if headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        return "origin: requests from another site may not change anything here"
    return None


def _cookie(headers: Headers, name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
        await send(message)

    return wrapped


async def _answer(send: Send, status: int, detail: str, extra: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
