"""JobService: submit, inspect and cancel graph jobs; owns the worker thread and the event broker."""

from __future__ import annotations

import logging
import threading
import uuid

from circuitboard.config import Settings
from circuitboard.jobs.cache_key import cache_key
from circuitboard.jobs.events import EventBroker
from circuitboard.jobs.host import EngineHost
from circuitboard.jobs.models import GraphRequest, JobView, Progress, Submitted
from circuitboard.jobs.worker import Worker
from circuitboard.store import Store
from circuitboard.store.records import JobRecord

log = logging.getLogger(__name__)


class QueueFull(Exception):
    def __init__(self, active: int, limit: int) -> None:
        super().__init__(f"queue: full ({active} of {limit} jobs queued or running); try again when one has finished")
        self.active = active
        self.limit = limit


class PromptTooLong(Exception):
    def __init__(self, n_tokens: int, limit: int) -> None:
        super().__init__(f"prompt: {n_tokens} tokens, more than the limit of {limit}")
        self.n_tokens = n_tokens
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
        self.broker = EventBroker()
        self._submit_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._cancelled: set[str] = set()
        self._live: dict[str, Progress] = {}
        self._worker: Worker | None = None

    # ------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        requeued, failed = self.store.jobs.recover_interrupted(self.settings.max_job_attempts)
        if requeued or failed:
            log.warning("after restart: re-queued jobs %s, failed jobs %s", requeued, failed)
        if self.host.state == "none":
            return  # without a model, queued jobs wait for a server that has one
        self._worker = Worker(self)
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.broker.close()
        if self._worker is not None:
            self._worker.stopping.set()
            self._worker.wake.set()
            self._worker.join(timeout)

    # ------------------------------------------------------------------------------------- requests
    def submit(self, req: GraphRequest) -> Submitted:
        """A cached graph, an identical job already under way, or a new job. Raises EngineUnavailable
        (no model), PromptTooLong, InvalidTarget, SlugTaken, QueueFull."""
        key: str | None = None
        if self.host.state != "loading":
            model, transcoders = self.host.names()  # raises EngineUnavailable when there is no model
            ids = self.host.token_ids(req.prompt)
            if len(ids) > self.settings.max_prompt_tokens:
                raise PromptTooLong(len(ids), self.settings.max_prompt_tokens)
            if req.target_tokens:
                self.host.check_targets(req.target_tokens)
            key = cache_key(model, transcoders, self.host.fingerprint(), ids, req)
            hit = self.store.graphs.by_cache_key(key)
            if hit is not None:
                return Submitted(graph=hit)
            same = self.store.jobs.active_by_cache_key(key)
            if same is not None:
                return Submitted(job=self.view(same))
        # While the model loads, the worker checks length and cache itself before running.
        if req.slug and self.store.graphs.exists(req.slug):
            raise SlugTaken(req.slug)
        with self._submit_lock:
            active = self.store.jobs.active_count()
            if active >= self.settings.max_queue:
                raise QueueFull(active, self.settings.max_queue)
            rec = self.store.jobs.create(uuid.uuid4().hex, req.prompt, req.model_dump(), key)
        view = self.view(rec)
        self.publish(view)
        if self._worker is not None:
            self._worker.wake.set()
        return Submitted(job=view)

    def status(self, job_id: str) -> JobView | None:
        rec = self.store.jobs.get(job_id)
        return None if rec is None else self.view(rec)

    def cancel(self, job_id: str) -> JobView:
        rec = self.store.jobs.get(job_id)
        if rec is None:
            raise JobNotFound(job_id)
        if rec.terminal:
            raise JobFinished(job_id, rec.status)
        with self._state_lock:
            self._cancelled.add(job_id)  # a running engine sees this through should_cancel
        if not self.finish(job_id, "cancelled"):
            now = self.store.jobs.get(job_id)
            raise JobFinished(job_id, now.status if now else "gone")
        return JobView(id=job_id, status="cancelled")

    # ------------------------------------------------------------------------------------- views
    def view(self, rec: JobRecord) -> JobView:
        v = JobView(
            id=rec.id,
            status=rec.status,
            phase=rec.phase,
            done=rec.done,
            total=rec.total,
            slug=rec.slug,
            error=rec.error,
        )
        if rec.status == "queued":
            ids = self.store.jobs.queued_ids()
            v.position = ids.index(rec.id) + 1 if rec.id in ids else None
        elif rec.status == "running":
            v.position = 0
            with self._state_lock:
                live = self._live.get(rec.id)
            if live is not None:
                v.phase, v.done, v.total = live.phase, live.done, live.total
        return v

    # ------------------------------------------------------------------------------------- worker side
    def publish(self, view: JobView) -> None:
        self.broker.publish(view)

    def publish_positions(self) -> None:
        for i, job_id in enumerate(self.store.jobs.queued_ids()):
            self.publish(JobView(id=job_id, status="queued", position=i + 1))

    def finish(self, job_id: str, status: str, *, slug: str | None = None, error: str | None = None) -> bool:
        if not self.store.jobs.finish(job_id, status, slug=slug, error=error):
            return False
        rec = self.store.jobs.get(job_id)
        if rec is not None:
            self.publish(self.view(rec))
        self.publish_positions()
        return True

    def requeue_interrupted(self, job_id: str) -> None:
        """The server is stopping mid-job: put it back in the queue for the next start."""
        if self.store.jobs.requeue(job_id):
            log.info("job %s interrupted by shutdown; re-queued for the next start", job_id)

    def is_cancelled(self, job_id: str) -> bool:
        with self._state_lock:
            return job_id in self._cancelled

    def set_live(self, job_id: str, progress: Progress) -> None:
        with self._state_lock:
            self._live[job_id] = progress

    def forget(self, job_id: str) -> None:
        with self._state_lock:
            self._live.pop(job_id, None)
            self._cancelled.discard(job_id)
