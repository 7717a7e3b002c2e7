"""JobService: submit, inspect and cancel jobs (graphs, validations, atlas builds); hands them to workers through a
Transport."""

from __future__ import annotations

import logging
import threading
from typing import Any

from circuitboard.config import Settings
from circuitboard.jobs.atlas import AtlasJob
from circuitboard.jobs.cache_key import atlas_key, request_key, validation_key
from circuitboard.jobs.events import Subscription
from circuitboard.jobs.host import ModelHost
from circuitboard.jobs.models import GraphRequest, JobState, JobView, Submitted, ValidateJob
from circuitboard.jobs.queue import JobQueue
from circuitboard.jobs.transport import Transport
from circuitboard.store import Store
from circuitboard.store.records import JobKind

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


class AtlasBusy(Exception):
    """Another build of the preset's atlas (other parameters) is queued or running: two would write one file."""

    def __init__(self, preset: str, job_id: str) -> None:
        super().__init__(f"atlas: a build of {preset!r}'s atlas is already under way (job {job_id}); wait for it")
        self.job_id = job_id


class JobNotFound(Exception):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job: no job {job_id!r}")


class JobFinished(Exception):
    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job: {job_id!r} has already finished ({status})")
        self.status = status


class JobNotDone(Exception):
    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job: {job_id!r} has no result yet ({status})")
        self.status = status


class JobService:
    def __init__(self, store: Store, transport: Transport, settings: Settings) -> None:
        self.store = store
        self.transport = transport
        self.settings = settings
        self.events = transport.events
        self.queue = JobQueue(store.jobs, self.events)
        self._submit_lock = threading.Lock()

    @property
    def host(self) -> ModelHost:
        """The host of the server's own preset."""
        return self.transport.host()

    # ------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        if self.transport.queue_name() is None:  # distributed workers recover their own queue's jobs
            requeued, failed = self.store.jobs.recover_interrupted(self.settings.max_job_attempts)
            if requeued or failed:
                log.warning("after restart: re-queued jobs %s, failed jobs %s", requeued, failed)
        self.transport.start(self.queue, self.store)

    def stop(self, timeout: float = 10.0) -> None:
        self.transport.stop(timeout)

    # ------------------------------------------------------------------------------------- requests
    def submit(self, req: GraphRequest, owner_id: int | None = None, preset: str | None = None) -> Submitted:
        """A cached graph, an identical job already under way, or a new job of `owner_id` (None: the local
        user) on `preset`'s queue (None: the server's own). Raises EngineUnavailable (no model, or no worker
        for the preset), PromptTooLong, InvalidTarget, SlugTaken, QueueFull (also QueueShareFull: the owner
        already has Settings.max_queue_per_user jobs)."""
        host = self.transport.host(preset)
        key: str | None = None
        if host.state != "loading":  # while the model loads, the worker checks length and cache itself
            key = request_key(host, req)
            if req.target_tokens:
                host.check_tokens(req.target_tokens, "target_tokens")
            hit = self.store.graphs.by_cache_key(key)
            if hit is not None:
                return Submitted(graph=hit)
            same = self.queue.active_with_key(key)
            if same is not None:
                return Submitted(job=same)
        if req.slug and self.store.graphs.taken(req.slug):
            raise SlugTaken(req.slug)
        view = self._enqueue(req.prompt, req.model_dump(), key, owner_id, "graph", preset)
        return Submitted(job=view)

    def submit_validation(self, job: ValidateJob, prompt: str, owner_id: int | None, preset: str | None) -> JobView:
        """A validation job (the caller checked its input against the graph), or the identical one already queued
        or running. Raises QueueFull."""
        key = validation_key(job)
        same = self.queue.active_with_key(key)
        if same is not None:
            return same
        return self._enqueue(prompt, job.model_dump(mode="json"), key, owner_id, "validate", preset)

    def submit_atlas(self, job: AtlasJob, owner_id: int | None, preset: str | None) -> JobView:
        """A build of `preset`'s atlas (None: the server's own) on a host of the preset, or the identical one
        already under way. Raises EngineUnavailable (no model, or no worker for the preset), AtlasBusy, QueueFull."""
        host = self.transport.host(preset)
        if host.state != "loading":  # a preset whose workers are loading takes the job; none at all is a 503
            host.require()
        queue = self.transport.queue_name(preset)
        key = atlas_key(queue, job)
        same = self.queue.active_with_key(key)
        if same is not None:
            return same
        name = preset or self.settings.preset
        busy = self.store.jobs.active_of_kind("atlas", queue)
        if busy is not None:
            raise AtlasBusy(name, busy.id)
        return self._enqueue(f"atlas of {name}", job.model_dump(mode="json"), key, owner_id, "atlas", preset)

    def _enqueue(
        self,
        prompt: str,
        request: dict[str, Any],
        key: str | None,
        owner_id: int | None,
        kind: JobKind,
        preset: str | None,
    ) -> JobView:
        queue = self.transport.queue_name(preset)
        with self._submit_lock:  # one process's submissions; replicas share the counts through the database
            active = self.queue.active_count()
            if active >= self.settings.max_queue:
                raise QueueFull(active, self.settings.max_queue)
            if owner_id is not None:
                mine = self.queue.active_count(owner_id)
                if mine >= self.settings.max_queue_per_user:
                    raise QueueShareFull(mine, self.settings.max_queue_per_user)
            rec = self.queue.add(prompt, request, key, owner_id, kind=kind, queue=queue)
            view = self.queue.view(rec)  # before a worker can claim it: its position in the queue now
        self.transport.dispatch(rec)
        return view

    def owner(self, job_id: str) -> tuple[bool, int | None]:
        """(exists, owner id) of a job."""
        rec = self.queue.get(job_id)
        return (False, None) if rec is None else (True, rec.owner_id)

    def status(self, job_id: str) -> JobView | None:
        rec = self.queue.get(job_id)
        return None if rec is None else self.queue.view(rec)

    def result(self, job_id: str) -> dict[str, Any]:
        """The stored result of a done non-graph job (a ValidationResult, an AtlasSummary). Raises JobNotFound,
        JobNotDone (also for a graph job: its result is the graph at `slug`)."""
        rec = self.queue.get(job_id)
        if rec is None:
            raise JobNotFound(job_id)
        if rec.status != "done" or rec.result is None:
            raise JobNotDone(job_id, rec.status if rec.kind != "graph" else f"a graph job: read /api/graphs/{rec.slug}")
        return rec.result

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
