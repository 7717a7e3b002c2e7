"""JobQueue: the queue of jobs (the database's jobs table) as the service and the workers use it.

Every change of a job's status goes through here, so every change is also published to its subscribers.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from circuitboard.engine.types import ProgressEvent
from circuitboard.jobs.events import JobEvents
from circuitboard.jobs.models import JobView
from circuitboard.jobs.progress import stored_fraction
from circuitboard.store.jobs import JobRepository
from circuitboard.store.records import JobKind, JobRecord

log = logging.getLogger(__name__)


class JobQueue:
    def __init__(self, jobs: JobRepository, events: JobEvents) -> None:
        self.jobs = jobs
        self.events = events

    # ------------------------------------------------------------------------------------- reading
    def get(self, job_id: str) -> JobRecord | None:
        return self.jobs.get(job_id)

    def view(self, rec: JobRecord) -> JobView:
        """The record with what only memory knows: the queue position, the running job's live progress."""
        if rec.status == "running":
            live = self.events.live(rec.id)
            if live is not None:
                return live.model_copy(update={"kind": rec.kind})
        v = JobView(
            kind=rec.kind,
            result_url=result_url(rec.id) if rec.kind != "graph" and rec.status == "done" else None,
            id=rec.id,
            status=rec.status,
            phase=rec.phase,
            done=rec.done,
            total=rec.total,
            slug=rec.slug,
            error=rec.error,
            fraction=stored_fraction(rec.status, rec.phase, rec.done, rec.total),
            eta_s=0.0 if rec.status == "done" else None,
        )
        if rec.status == "queued":
            ids = self.jobs.queued_ids(rec.queue)
            v.position = ids.index(rec.id) + 1 if rec.id in ids else None
        elif rec.status == "running":
            v.position = 0  # running in another process, or before its first event: the database's copy
        return v

    def active_count(self, owner_id: int | None = None) -> int:
        return self.jobs.active_count(owner_id)

    def active_with_key(self, key: str) -> JobView | None:
        rec = self.jobs.active_by_cache_key(key)
        return None if rec is None else self.view(rec)

    # ------------------------------------------------------------------------------------- changes
    def add(
        self,
        prompt: str,
        request: dict[str, Any],
        key: str | None,
        owner_id: int | None = None,
        *,
        kind: JobKind = "graph",
        queue: str | None = None,
    ) -> JobRecord:
        rec = self.jobs.create(uuid.uuid4().hex, prompt, request, key, owner_id, kind=kind, queue=queue)
        self.events.publish(self.view(rec))
        return rec

    def claim_next(self) -> JobRecord | None:
        """The oldest queued job, now running (only the single worker calls this; it then calls `started`)."""
        return self.jobs.claim_next()

    def started(self, job: JobRecord) -> None:
        self.events.begin(job.id, job.kind)
        self.events.publish(JobView(id=job.id, status="running", position=0, kind=job.kind))
        self.publish_positions(job.queue)

    def set_cache_key(self, job_id: str, key: str) -> None:
        self.jobs.set_cache_key(job_id, key)

    def save_progress(self, job_id: str, p: ProgressEvent) -> None:
        self.jobs.progress(job_id, p.phase, p.done, p.total)

    def finish(
        self,
        job_id: str,
        status: str,
        *,
        slug: str | None = None,
        error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> bool:
        """Move an active job to a terminal status; False when it already had one (the first one wins)."""
        if not self.jobs.finish(job_id, status, slug=slug, error=error, result=result):
            return False
        rec = self.jobs.get(job_id)
        if rec is not None:
            self.published(rec)
        return True

    def published(self, rec: JobRecord) -> None:
        """Tell subscribers the job's state as the database has it, and the positions behind it."""
        self.events.publish(self.view(rec))
        self.publish_positions(rec.queue)

    def requeue_interrupted(self, job_id: str) -> bool:
        """The server is stopping mid-job: put it back in the queue for the next start."""
        if self.jobs.requeue(job_id):
            log.info("job %s interrupted by shutdown; re-queued for the next start", job_id)
            return True
        return False

    def publish_positions(self, queue: str | None = None) -> None:
        for i, (job_id, kind) in enumerate(self.jobs.queued_kinds(queue)):
            self.events.publish(JobView(id=job_id, status="queued", position=i + 1, kind=kind))


def result_url(job_id: str) -> str:
    return f"/api/jobs/{job_id}/result"
