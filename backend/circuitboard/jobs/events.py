"""Fan-out of job events from the worker thread to SSE subscribers on the server's event loop."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict

from circuitboard.jobs.models import JobView


class Subscription:
    """One listener's queue. `None` in the queue means the server is shutting down."""

    def __init__(self, broker: EventBroker, job_id: str) -> None:
        self._broker = broker
        self.job_id = job_id
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[JobView | None] = asyncio.Queue()

    async def get(self, timeout: float) -> JobView | None:
        """The next event; raises TimeoutError after `timeout` seconds without one."""
        return await asyncio.wait_for(self.queue.get(), timeout)

    def close(self) -> None:
        self._broker._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBroker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._closed = False

    def subscribe(self, job_id: str) -> Subscription:
        """Call from a coroutine; subscribe before reading the current state so no event is missed."""
        sub = Subscription(self, job_id)
        with self._lock:
            if self._closed:
                sub.queue.put_nowait(None)
            else:
                self._subs[job_id].add(sub)
        return sub

    def publish(self, view: JobView) -> None:
        """Thread-safe; never blocks the worker."""
        with self._lock:
            subs = list(self._subs.get(view.id, ()))
        for sub in subs:
            _put(sub, view)

    def close(self) -> None:
        """Wake every listener so open streams end and the server can shut down."""
        with self._lock:
            self._closed = True
            subs = [s for group in self._subs.values() for s in group]
            self._subs.clear()
        for sub in subs:
            _put(sub, None)

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            group = self._subs.get(sub.job_id)
            if group is not None:
                group.discard(sub)
                if not group:
                    del self._subs[sub.job_id]


def _put(sub: Subscription, item: JobView | None) -> None:
    try:
        sub.loop.call_soon_threadsafe(sub.queue.put_nowait, item)
    except RuntimeError:
        pass  # the subscriber's loop is closed: it is gone
