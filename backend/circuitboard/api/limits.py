"""Rate limits on what costs the server (traces, interventions, previews, imports, LLM explanations), with the
`limits` library: a moving window per signed-in user and, at `per_ip_factor` times the rate, per address. The
counters live in memory, or, in distributed mode, in Redis, so that every API replica counts the same calls."""

from __future__ import annotations

import math
import time
from typing import Any, Literal

from fastapi import Depends, HTTPException, Request
from limits import RateLimitItem, parse, storage, strategies

from circuitboard.api.auth import principal
from circuitboard.config import RateLimits

Action = Literal["traces", "interventions", "tokenize", "imports", "explain"]
ACTIONS: tuple[Action, ...] = ("traces", "interventions", "tokenize", "imports", "explain")


class RateLimiter:
    def __init__(self, cfg: RateLimits, storage_url: str | None = None) -> None:
        counters = storage.storage_from_string(storage_url) if storage_url else storage.MemoryStorage()
        self._window = strategies.MovingWindowRateLimiter(counters)
        self.per_user: dict[str, RateLimitItem] = {a: parse(getattr(cfg, a)) for a in ACTIONS}  # ValueError: bad
        self.per_ip = {a: type(i)(i.amount * cfg.per_ip_factor, i.multiples) for a, i in self.per_user.items()}

    def hit(self, action: Action, user_key: str | None, address: str) -> float | None:
        """Count one request; None when allowed, else the seconds until the caller may try again."""
        if user_key is None:  # the one local user, or a caller known only by address: the address has its rate
            buckets = [(self.per_user[action], f"ip:{address}")]
        else:
            buckets = [(self.per_user[action], user_key), (self.per_ip[action], f"ip:{address}")]
        for item, key in buckets:
            if not self._window.hit(item, action, key):
                reset = self._window.get_window_stats(item, action, key).reset_time
                return max(1.0, math.ceil(reset - time.time()))
        return None


def rate_limited(action: Action) -> Any:  # a Depends(...) marker; FastAPI types it as Any
    """A route dependency: 429 with Retry-After once the caller used up `action`'s rate."""

    def check(request: Request) -> None:
        svc = getattr(request.app.state, "services", None)
        if svc is None:  # an app that embeds only some routers (the feature routes) has no limiter
            return
        limiter: RateLimiter = svc.limiter
        address = request.client.host if request.client is not None else "unknown"
        wait = limiter.hit(action, principal(request).rate_key, address)
        if wait is not None:
            rate = limiter.per_user[action]
            raise HTTPException(
                429,
                f"rate: at most {rate.amount} {action} per {rate.multiples} {rate.GRANULARITY.name}; "
                f"try again in {wait:.0f} s",
                headers={"Retry-After": str(int(wait))},
            )

    return Depends(check)
