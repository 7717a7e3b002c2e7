"""Job events: fan-out from the worker thread to SSE subscribers on the server's event loop, and the live state
of jobs that only memory holds (progress of the running job, cancel requests)."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict

from circuitboard.engine.types import ProgressEvent
from circuitboard.jobs.models import JobView
from circuitboard.jobs.progress import LiveProgress
from circuitboard.store.records import JobKind


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


class JobEvents:
    """What is known of jobs beyond the database: the running job's live progress, cancel requests, and the
    fan-out of every change to subscribers. The service (requests) and the worker (the running job) share one."""

    def __init__(self) -> None:
        self.broker = EventBroker()
        self._lock = threading.Lock()
        self._live: dict[str, LiveProgress] = {}
        self._cancelled: set[str] = set()

    def publish(self, view: JobView) -> None:
        self.broker.publish(view)

    def subscribe(self, job_id: str) -> Subscription:
        return self.broker.subscribe(job_id)

    def close(self) -> None:
        self.broker.close()

    def begin(self, job_id: str, kind: JobKind = "graph") -> None:
        """The job starts running now: its clock (for the ETA) starts here."""
        with self._lock:
            self._live[job_id] = LiveProgress(kind=kind)

    def set_live(self, job_id: str, progress: ProgressEvent) -> JobView:
        """Record the running job's progress; returns its view (phase, fraction, ETA) to publish."""
        with self._lock:
            live = self._live.setdefault(job_id, LiveProgress())
            live.update(progress)
            return running_view(job_id, live)

    def live(self, job_id: str) -> JobView | None:
        """The running job's view from memory, or None when this process does not run it."""
        with self._lock:
            live = self._live.get(job_id)
            return None if live is None else running_view(job_id, live)

    def request_cancel(self, job_id: str) -> None:
        """A running engine sees this through its should_cancel callback."""
        with self._lock:
            self._cancelled.add(job_id)

    def is_cancelled(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._cancelled

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._live.pop(job_id, None)
            self._cancelled.discard(job_id)


def running_view(job_id: str, live: LiveProgress) -> JobView:
    p = live.event
    view = JobView(id=job_id, status="running", position=0, fraction=live.fraction, eta_s=live.eta_s, kind=live.kind)
    if p is not None:
        view.phase, view.done, view.total = p.phase, p.done, p.total
    return view
