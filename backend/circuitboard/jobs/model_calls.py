"""Requests that need the model (interventions, the token preview) run on a few threads of their own, never on
the server's request threads: a crowd of them waiting for the model while a trace runs used to take every
request thread, and then `GET /api/config` waited 20 s. Past `max_pending` waiting calls, more are refused at
once (503) rather than queued without bound."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from circuitboard.jobs.host import EngineBusy

T = TypeVar("T")


class ModelCalls:
    def __init__(self, name: str, threads: int, max_pending: int) -> None:
        self.name = name
        self.max_pending = max_pending
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"circuitboard-{name}")
        self._slots = threading.BoundedSemaphore(max_pending)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        if not self._slots.acquire(blocking=False):
            raise EngineBusy(f"engine: {self.max_pending} {self.name} are already waiting for the model; try again")
        try:
            future = self._pool.submit(fn, *args)
        except RuntimeError:  # shut down
            self._slots.release()
            raise
        # The slot frees when the call ends, not when the caller stops waiting for it.
        future.add_done_callback(lambda _: self._slots.release())
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
