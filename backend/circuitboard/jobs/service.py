"""JobService: submit, inspect and cancel graph jobs; owns the worker thread and the job events."""

from __future__ import annotations

import logging
import threading

from circuitboard.config import Settings
from circuitboard.jobs.cache_key import request_key
from circuitboard.jobs.events import JobEvents, Subscription
from circuitboard.jobs.host import EngineHost
from circuitboard.jobs.models import GraphRequest, JobState, JobView, Submitted
from circuitboard.jobs.queue import JobQueue
from circuitboard.jobs.worker import Worker
from circuitboard.store import Store

log = logging.getLogger(__name__)


class QueueFull(Exception):
    def __init__(self, active: int, limit: int) -> None:
        super().__init__(f"queue: full ({active} of {limit} jobs queued or running); try again when one has finished")
        self.active = active
        self.limit = limit


class QueueShareFull(QueueFull):
    """One user already has their share of the queue."""

    def __init__(self, active: int, limit: int) -> None:
        Exception.__init__(
            self, f"queue: you have {active} jobs queued or running, the most one user may have; wait for one"
        )
        self.active = active
        self.limit = limit


class SlugTaken(Exception):
    def __init__(self, slug: str) -> None:
        super().__init__(f"slug: {slug!r} is already taken")


class JobNotFound(Exception):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job: no job {job_id!r}")


class JobFinished(Exception):
    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job: {job_id!r} has already finished ({status})")
        self.status = status


class JobService:
    def __init__(self, store: Store, host: EngineHost, settings: Settings) -> None:
        self.store = store
        self.host = host
        self.settings = settings
        self.events = JobEvents()
        self.queue = JobQueue(store.jobs, self.events)
        self._submit_lock = threading.Lock()
        self._worker: Worker | None = None

    # ------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        requeued, failed = self.store.jobs.recover_interrupted(self.settings.max_job_attempts)
        if requeued or failed:
            log.warning("after restart: re-queued jobs %s, failed jobs %s", requeued, failed)
        if self.host.state == "none":
            return  # without a model, queued jobs wait for a server that has one
        self._worker = Worker(self.host, self.queue, self.events, self.store.graphs)
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.events.close()
        if self._worker is not None:
            self._worker.stop(timeout)

    # ------------------------------------------------------------------------------------- requests
    def submit(self, req: GraphRequest, owner_id: int | None = None) -> Submitted:
        """A cached graph, an identical job already under way, or a new job of `owner_id` (None: the local
        user). Raises EngineUnavailable (no model), PromptTooLong, InvalidTarget, SlugTaken, QueueFull (also
        QueueShareFull: the owner already has Settings.max_queue_per_user jobs)."""
        key: str | None = None
        if self.host.state != "loading":  # while the model loads, the worker checks length and cache itself
            key = request_key(self.host, req)
            if req.target_tokens:
                self.host.check_tokens(req.target_tokens, "target_tokens")
            hit = self.store.graphs.by_cache_key(key)
            if hit is not None:
                return Submitted(graph=hit)
            same = self.queue.active_with_key(key)
            if same is not None:
                return Submitted(job=same)
        if req.slug and self.store.graphs.taken(req.slug):
            raise SlugTaken(req.slug)
        with self._submit_lock:
            active = self.queue.active_count()
            if active >= self.settings.max_queue:
                raise QueueFull(active, self.settings.max_queue)
            if owner_id is not None:
                mine = self.queue.active_count(owner_id)
                if mine >= self.settings.max_queue_per_user:
                    raise QueueShareFull(mine, self.settings.max_queue_per_user)
            view = self.queue.add(req, key, owner_id)
        if self._worker is not None:
            self._worker.wake.set()
        return Submitted(job=view)

    def owner(self, job_id: str) -> tuple[bool, int | None]:
        """(exists, owner id) of a job."""
        rec = self.queue.get(job_id)
        return (False, None) if rec is None else (True, rec.owner_id)

    def status(self, job_id: str) -> JobView | None:
        rec = self.queue.get(job_id)
        return None if rec is None else self.queue.view(rec)

    def subscribe(self, job_id: str) -> Subscription:
        """Events of one job; subscribe before reading its state so no event in between is missed."""
        return self.events.subscribe(job_id)

    def cancel(self, job_id: str) -> JobState:
        rec = self.queue.get(job_id)
        if rec is None:
            raise JobNotFound(job_id)
        if rec.terminal:
            raise JobFinished(job_id, rec.status)
        self.events.request_cancel(job_id)
        if not self.queue.finish(job_id, "cancelled"):
            now = self.queue.get(job_id)
            raise JobFinished(job_id, now.status if now else "gone")
        return JobState(id=job_id, status="cancelled")
