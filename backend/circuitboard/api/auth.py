"""Who is asking: the principal of a request, from an API token or a session cookie (shared mode), or the one
local user of a single-user server. The request guard (api/security.py) resolves it once per request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request

from circuitboard.store import Store
from circuitboard.store.records import UserRecord

SESSION_COOKIE = "cb_session"
CSRF_HEADER = "x-csrf-token"

Via = Literal["local", "token", "session", "anonymous"]


@dataclass(frozen=True)
class Principal:
    """`user` is None for the local user of a single-user server (who may do everything) and for anonymous
    callers of a shared one."""

    via: Via
    user: UserRecord | None = None
    csrf: str | None = None  # the session's CSRF token (cookie sessions only)

    @property
    def signed_in(self) -> bool:
        return self.via != "anonymous"

    @property
    def user_id(self) -> int | None:
        return self.user.id if self.user is not None else None

    @property
    def name(self) -> str | None:
        return self.user.name if self.user is not None else None

    @property
    def is_admin(self) -> bool:
        return self.via == "local" or (self.user is not None and self.user.is_admin)

    def may_change(self, owner_id: int | None) -> bool:
        """Delete or overwrite what `owner_id` made (None: made in single-user mode; admins only)."""
        return self.is_admin or (owner_id is not None and owner_id == self.user_id)

    @property
    def rate_key(self) -> str | None:
        """The key of this principal's own rate-limit bucket; None when only the address counts."""
        return f"user:{self.user.id}" if self.user is not None else None


LOCAL = Principal(via="local")
ANONYMOUS = Principal(via="anonymous")


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def resolve(store: Store, token: str | None, session_id: str | None) -> Principal:
    """The principal of a shared-mode request (runs in a thread: a token's first use costs an argon2 check)."""
    if token is not None:
        user = store.users.by_token(token)
        return ANONYMOUS if user is None else Principal(via="token", user=user)
    if session_id is not None:
        found = store.users.by_session(session_id)
        if found is not None:
            return Principal(via="session", user=found[0], csrf=found[1])
    return ANONYMOUS


def principal(request: Request) -> Principal:
    found: Principal = getattr(request.state, "principal", ANONYMOUS)
    return found


PrincipalDep = Annotated[Principal, Depends(principal)]


def forbidden(what: str) -> HTTPException:
    return HTTPException(403, f"{what}: only its owner or an admin may change it")
