"""The worker thread: loads the engine, then runs queued jobs one at a time."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

from circuitboard.jobs.cache_key import cache_key
from circuitboard.jobs.convert import attribution_params
from circuitboard.jobs.host import EngineUnavailable
from circuitboard.jobs.models import GraphRequest, JobView, Progress
from circuitboard.store.records import JobRecord

if TYPE_CHECKING:
    from circuitboard.jobs.service import JobService

log = logging.getLogger(__name__)

_DB_PROGRESS_EVERY_S = 0.5  # progress is live in memory; the database copy only needs to be recent
_EVENT_EVERY_S = 0.05


class JobFailed(Exception):
    """A job cannot run; the message is shown to the user as the job's `error`."""


class Worker(threading.Thread):
    def __init__(self, service: JobService) -> None:
        super().__init__(name="circuitboard-worker", daemon=True)
        self.svc = service
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        self.svc.host.load()
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                job = self.svc.store.jobs.claim_next()
            except Exception:  # noqa: BLE001 - e.g. the database briefly locked: try again, never die
                log.error("could not read the job queue:\n%s", traceback.format_exc())
                self.stopping.wait(1.0)
                continue
            if job is None:
                self.wake.wait(timeout=1.0)
                continue
            try:
                self._run_job(job)
            except Exception as e:  # noqa: BLE001 - the worker must outlive any one job
                log.error("job %s failed outside the engine:\n%s", job.id, traceback.format_exc())
                try:
                    self.svc.finish(job.id, "failed", error=f"internal error: {type(e).__name__}: {e}")
                except Exception:  # noqa: BLE001
                    log.error("could not mark job %s failed:\n%s", job.id, traceback.format_exc())
            finally:
                self.svc.forget(job.id)

    def _run_job(self, job: JobRecord) -> None:
        svc = self.svc
        svc.publish(JobView(id=job.id, status="running", position=0))
        svc.publish_positions()
        req = GraphRequest.model_validate(job.request)
        try:
            model, transcoders = svc.host.names()
            ids = svc.host.token_ids(req.prompt)
            limit = svc.settings.max_prompt_tokens
            if len(ids) > limit:
                raise JobFailed(f"prompt: {len(ids)} tokens, more than the limit of {limit}")
            key = cache_key(model, transcoders, svc.host.fingerprint(), ids, req)
            hit = svc.store.graphs.by_cache_key(key)
            if hit is not None:
                svc.finish(job.id, "done", slug=hit.slug)
                return
            svc.store.jobs.set_cache_key(job.id, key)
            graph = svc.host.attribute(
                req.prompt,
                attribution_params(req),
                progress=self._progress_callback(job.id),
                should_cancel=lambda: svc.is_cancelled(job.id) or self.stopping.is_set(),
            )
        except (JobFailed, EngineUnavailable) as e:
            svc.finish(job.id, "failed", error=str(e))
            return
        except Exception as e:  # noqa: BLE001
            if svc.is_cancelled(job.id):
                return  # the engine stopped because we asked it to; the job is already `cancelled`
            if self.stopping.is_set():
                svc.requeue_interrupted(job.id)
                return
            log.error("job %s failed:\n%s", job.id, traceback.format_exc())
            # ValueError is the engine's way of rejecting an input (e.g. an unknown target token).
            prefix = "" if isinstance(e, ValueError) else f"{type(e).__name__}: "
            svc.finish(job.id, "failed", error=f"{prefix}{e}")
            return
        if svc.is_cancelled(job.id):
            return  # finished anyway, but the user no longer wants it
        summary = svc.store.graphs.add(
            graph,
            prompt=req.prompt,
            model=model,
            transcoders=transcoders,
            source="traced",
            digest=key,
            cache_key=key,
            requested_slug=req.slug,
        )
        svc.finish(job.id, "done", slug=summary.slug)

    def _progress_callback(self, job_id: str):
        last_db = 0.0
        last_event = 0.0
        last_phase: str | None = None

        def progress(event: Any) -> None:
            nonlocal last_db, last_event, last_phase
            p = Progress(phase=str(event.phase), done=int(event.done), total=int(event.total))
            self.svc.set_live(job_id, p)
            now = time.monotonic()
            boundary = p.phase != last_phase or p.done >= p.total
            if boundary or now - last_event >= _EVENT_EVERY_S:
                last_event = now
                self.svc.publish(
                    JobView(id=job_id, status="running", position=0, phase=p.phase, done=p.done, total=p.total)
                )
            if boundary or now - last_db >= _DB_PROGRESS_EVERY_S:
                last_db = now
                self.svc.store.jobs.progress(job_id, p.phase, p.done, p.total)
            last_phase = p.phase

        return progress
