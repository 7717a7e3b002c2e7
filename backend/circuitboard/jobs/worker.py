"""The worker thread: loads the engine, then runs queued jobs one at a time.

It sees the engine host, the queue, the job events and where graphs are stored; not the service."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from circuitboard.engine.types import ProgressEvent
from circuitboard.jobs.cache_key import request_key
from circuitboard.jobs.events import JobEvents
from circuitboard.jobs.host import EngineHost, EngineUnavailable, PromptTooLong
from circuitboard.jobs.models import GraphRequest
from circuitboard.jobs.queue import JobQueue
from circuitboard.store.graphs import GraphRepository
from circuitboard.store.records import JobRecord

log = logging.getLogger(__name__)

_DB_PROGRESS_EVERY_S = 0.5  # progress is live in memory; the database copy only needs to be recent
_EVENT_EVERY_S = 0.05


class Worker(threading.Thread):
    def __init__(self, host: EngineHost, queue: JobQueue, events: JobEvents, graphs: GraphRepository) -> None:
        super().__init__(name="circuitboard-worker", daemon=True)
        self.host, self.queue, self.events, self.graphs = host, queue, events, graphs
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def stop(self, timeout: float) -> None:
        self.stopping.set()
        self.wake.set()
        self.join(timeout)

    def run(self) -> None:
        self.host.load()
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                job = self.queue.claim_next()
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
                    self.queue.finish(job.id, "failed", error=f"internal error: {type(e).__name__}: {e}")
                except Exception:  # noqa: BLE001
                    log.error("could not mark job %s failed:\n%s", job.id, traceback.format_exc())
            finally:
                self.events.forget(job.id)

    def _run_job(self, job: JobRecord) -> None:
        self.queue.started(job.id)
        req = GraphRequest.model_validate(job.request)
        traced = self._trace(job.id, req)
        if traced is None or self.events.is_cancelled(job.id):
            return  # finished another way, or finished anyway but the user no longer wants it
        graph, key = traced
        model, transcoders = self.host.names()
        summary = self.graphs.add(
            graph,
            prompt=req.prompt,
            model=model,
            transcoders=transcoders,
            source="traced",
            digest=key,
            cache_key=key,
            requested_slug=req.slug,
            owner_id=job.owner_id,
        )
        self.queue.finish(job.id, "done", slug=summary.slug)

    def _trace(self, job_id: str, req: GraphRequest) -> tuple[dict[str, Any], str] | None:
        """(graph JSON, cache key), or None when the job ended here: a cache hit, a failure, a cancel, a stop.
        While the model loaded, requests were queued unchecked: length and cache are checked here too."""
        try:
            key = request_key(self.host, req)
            hit = self.graphs.by_cache_key(key)
            if hit is not None:
                self.queue.finish(job_id, "done", slug=hit.slug)
                return None
            self.queue.set_cache_key(job_id, key)
            graph = self.host.attribute(
                req.prompt,
                req.params(),
                progress=self._progress_callback(job_id),
                should_cancel=lambda: self.events.is_cancelled(job_id) or self.stopping.is_set(),
            )
        except (PromptTooLong, EngineUnavailable) as e:
            self.queue.finish(job_id, "failed", error=str(e))
            return None
        except Exception as e:  # noqa: BLE001
            self._engine_failed(job_id, e)
            return None
        return graph, key

    def _engine_failed(self, job_id: str, e: Exception) -> None:
        if self.events.is_cancelled(job_id):
            return  # the engine stopped because we asked it to; the job is already `cancelled`
        if self.stopping.is_set():
            self.queue.requeue_interrupted(job_id)
            return
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        # ValueError is the engine's way of rejecting an input (e.g. an unknown target token).
        prefix = "" if isinstance(e, ValueError) else f"{type(e).__name__}: "
        self.queue.finish(job_id, "failed", error=f"{prefix}{e}")

    def _progress_callback(self, job_id: str) -> Callable[[ProgressEvent], None]:
        """Live progress on every event; subscribers and the database hear of it at a bounded rate, and
        always at the boundaries of a phase."""
        last_db = 0.0
        last_event = 0.0
        last_phase: str | None = None

        def progress(p: ProgressEvent) -> None:
            nonlocal last_db, last_event, last_phase
            view = self.events.set_live(job_id, p)
            now = time.monotonic()
            boundary = p.phase != last_phase or p.done >= p.total
            if boundary or now - last_event >= _EVENT_EVERY_S:
                last_event = now
                self.events.publish(view)
            if boundary or now - last_db >= _DB_PROGRESS_EVERY_S:
                last_db = now
                self.queue.save_progress(job_id, p)
            last_phase = p.phase

        return progress
