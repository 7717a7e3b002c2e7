"""Job repository: the queue lives in the database so it survives a restart."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from sqlalchemy import func, select, update

from circuitboard.store.db import Database, changed_rows
from circuitboard.store.models import JobRow, utcnow
from circuitboard.store.records import TERMINAL_STATUSES, JobKind, JobRecord

ACTIVE = ("queued", "running")


def _record(row: JobRow) -> JobRecord:
    return JobRecord.model_validate(row, from_attributes=True)


class JobRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self,
        job_id: str,
        prompt: str,
        request: dict[str, Any],
        cache_key: str | None,
        owner_id: int | None = None,
        *,
        kind: JobKind = "graph",
        queue: str | None = None,
    ) -> JobRecord:
        with self.db.session() as s:
            row = JobRow(
                kind=kind,
                queue=queue,
                owner_id=owner_id,
                id=job_id,
                status="queued",
                prompt=prompt,
                request=request,
                cache_key=cache_key,
                attempts=0,
                done=0,
                total=0,
                created_at=utcnow(),
            )
            s.add(row)
            s.flush()
            return _record(row)

    def get(self, job_id: str) -> JobRecord | None:
        with self.db.session() as s:
            row = s.get(JobRow, job_id)
            return None if row is None else _record(row)

    def active_count(self, owner_id: int | None = None) -> int:
        """Queued and running jobs: all of them, or those of one owner."""
        where = [JobRow.status.in_(ACTIVE)] + ([JobRow.owner_id == owner_id] if owner_id is not None else [])
        with self.db.session() as s:
            return s.scalar(select(func.count()).select_from(JobRow).where(*where)) or 0

    def queued_ids(self, queue: str | None = None, older_than_s: float | None = None) -> list[str]:
        """Queued job ids, first to run first: of every queue, or of one preset's queue; all, or those queued
        more than `older_than_s` ago."""
        where = [JobRow.status == "queued"] + ([JobRow.queue == queue] if queue is not None else [])
        if older_than_s is not None:
            where.append(JobRow.created_at < utcnow() - timedelta(seconds=older_than_s))
        with self.db.session() as s:
            return list(s.scalars(select(JobRow.id).where(*where).order_by(JobRow.created_at, JobRow.id)))

    def queued_kinds(self, queue: str | None = None) -> list[tuple[str, JobKind]]:
        """(id, kind) of the queued jobs, first to run first."""
        where = [JobRow.status == "queued"] + ([JobRow.queue == queue] if queue is not None else [])
        with self.db.session() as s:
            rows = s.execute(select(JobRow.id, JobRow.kind).where(*where).order_by(JobRow.created_at, JobRow.id))
            return [(r.id, cast(JobKind, r.kind)) for r in rows]

    def running(self, queue: str) -> list[JobRecord]:
        with self.db.session() as s:
            rows = s.scalars(select(JobRow).where(JobRow.status == "running", JobRow.queue == queue))
            return [_record(r) for r in rows]

    def active_by_cache_key(self, cache_key: str) -> JobRecord | None:
        with self.db.session() as s:
            row = s.scalar(
                select(JobRow)
                .where(JobRow.cache_key == cache_key, JobRow.status.in_(ACTIVE))
                .order_by(JobRow.created_at)
                .limit(1)
            )
            return None if row is None else _record(row)

    def active_of_kind(self, kind: JobKind, queue: str | None) -> JobRecord | None:
        """The oldest queued or running job of `kind` on `queue` (None: the local worker's jobs)."""
        on_queue = JobRow.queue.is_(None) if queue is None else JobRow.queue == queue
        with self.db.session() as s:
            row = s.scalar(
                select(JobRow)
                .where(JobRow.kind == kind, on_queue, JobRow.status.in_(ACTIVE))
                .order_by(JobRow.created_at)
                .limit(1)
            )
            return None if row is None else _record(row)

    def claim_next(self) -> JobRecord | None:
        """Mark the oldest queued job running and return it. Only the single worker calls this."""
        with self.db.session() as s:
            row = s.scalar(
                select(JobRow).where(JobRow.status == "queued").order_by(JobRow.created_at, JobRow.id).limit(1)
            )
            if row is None:
                return None
            row.status = "running"
            row.attempts += 1
            row.started_at = utcnow()
            row.phase, row.done, row.total, row.error = None, 0, 0, None
            s.flush()
            return _record(row)

    def claim(self, job_id: str, worker: str, max_attempts: int) -> JobRecord | None:
        """Distributed mode: the job a queue message names, now running on `worker`. A queued job starts; a running
        one (its worker died and the broker delivered it again) starts again, or fails once it used up its
        attempts. Returns the job as it is now (the caller runs it when it is `running` on `worker`); None when
        there is no such job."""
        with self.db.session() as s:
            row = s.get(JobRow, job_id, with_for_update=True)
            if row is None or row.status not in ACTIVE:
                return None if row is None else _record(row)
            if row.status == "running" and row.attempts >= max_attempts:
                row.status = "failed"
                row.error = f"the worker stopped mid-job {row.attempts} time(s) (killed or out of memory); not retried"
                row.finished_at = utcnow()
                return _record(row)
            row.status, row.worker = "running", worker
            row.attempts += 1
            row.started_at = utcnow()
            row.phase, row.done, row.total, row.error = None, 0, 0, None
            s.flush()
            return _record(row)

    def set_cache_key(self, job_id: str, cache_key: str) -> None:
        with self.db.session() as s:
            s.execute(update(JobRow).where(JobRow.id == job_id).values(cache_key=cache_key))

    def progress(self, job_id: str, phase: str, done: int, total: int) -> None:
        with self.db.session() as s:
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == "running")
                .values(phase=phase, done=done, total=total)
            )

    def finish(
        self,
        job_id: str,
        status: str,
        *,
        slug: str | None = None,
        error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> bool:
        """Move an active job to a terminal status. False when it already was terminal (e.g. the user
        cancelled it while the engine was finishing): the first terminal status wins, and a result is written once."""
        assert status in TERMINAL_STATUSES
        values: dict[str, Any] = {"status": status, "slug": slug, "error": error, "finished_at": utcnow()}
        if result is not None:
            values["result"] = result
        if status == "done":  # a finished job is all the way through: phase "done", done == total
            values.update(phase="done", done=JobRow.total)
        with self.db.session() as s:
            res = s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.status.in_(ACTIVE)).values(**values))
            return changed_rows(res) > 0

    def requeue(self, job_id: str) -> bool:
        """Put a running job back in the queue without counting the attempt (a clean shutdown is not the
        job's fault)."""
        with self.db.session() as s:
            res = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == "running")
                .values(status="queued", attempts=JobRow.attempts - 1, phase=None, done=0, total=0)
            )
            return changed_rows(res) > 0

    def recover_interrupted(self, max_attempts: int) -> tuple[list[str], list[str]]:
        """After a restart: jobs left `running` are re-queued, or failed once they used up their attempts
        (a prompt that crashes the process must not crash it forever). Returns (requeued, failed) ids."""
        requeued: list[str] = []
        failed: list[str] = []
        with self.db.session() as s:
            for row in s.scalars(select(JobRow).where(JobRow.status == "running")):
                if row.attempts >= max_attempts:
                    row.status = "failed"
                    row.error = f"interrupted by a server restart {row.attempts} time(s); not retried again"
                    row.finished_at = utcnow()
                    failed.append(row.id)
                else:
                    row.status = "queued"
                    row.phase, row.done, row.total = None, 0, 0
                    requeued.append(row.id)
        return requeued, failed
