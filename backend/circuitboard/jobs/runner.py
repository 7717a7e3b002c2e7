"""JobRunner: runs one claimed job of any kind on the engine host, for the local worker thread and for a
distributed worker process alike. It sees the host, the queue, the job events and where graphs are stored.

Every way a job can end is decided here: done (a graph stored, or a result written), failed (with a message),
cancelled (the user asked; the engine stops at its next check), interrupted (the process is stopping: the
job goes back to the queue through `on_interrupted`)."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from circuitboard.engine.linkgraph import GraphShapeError, LinkGraph
from circuitboard.engine.types import AttributionCancelled, ProgressEvent
from circuitboard.jobs.atlas import AtlasBuilder, AtlasJob
from circuitboard.jobs.cache_key import request_key
from circuitboard.jobs.events import JobEvents
from circuitboard.jobs.host import EngineHost, EngineUnavailable, PromptTooLong
from circuitboard.jobs.models import GraphRequest, ValidateJob
from circuitboard.jobs.queue import JobQueue
from circuitboard.store.graphs import GraphRepository
from circuitboard.store.records import JobRecord

log = logging.getLogger(__name__)

_DB_PROGRESS_EVERY_S = 0.5  # progress is live in memory (or Redis); the database copy only needs to be recent
_EVENT_EVERY_S = 0.05


class JobRunner:
    def __init__(
        self,
        host: EngineHost,
        queue: JobQueue,
        events: JobEvents,
        graphs: GraphRepository,
        stopping: threading.Event,
        on_interrupted: Callable[[str], None] | None = None,
        atlas: AtlasBuilder | None = None,
    ) -> None:
        self.host, self.queue, self.events, self.graphs = host, queue, events, graphs
        self.atlas = atlas  # None: this host builds no atlas (its atlas jobs fail, saying so)
        self.stopping = stopping
        self.on_interrupted = on_interrupted or self.queue.requeue_interrupted

    def run(self, job: JobRecord) -> None:
        """Run a job the caller has marked running; never raises."""
        try:
            self.queue.started(job)
            if job.kind == "validate":
                self._validate(job)
            elif job.kind == "atlas":
                self._atlas(job)
            else:
                self._graph(job)
        except Exception as e:  # noqa: BLE001 - the worker must outlive any one job
            log.error("job %s failed outside the engine:\n%s", job.id, traceback.format_exc())
            try:
                self.queue.finish(job.id, "failed", error=f"internal error: {type(e).__name__}: {e}")
            except Exception:  # noqa: BLE001
                log.error("could not mark job %s failed:\n%s", job.id, traceback.format_exc())
        finally:
            self.events.forget(job.id)

    def cancelled(self, job_id: str) -> bool:
        return self.events.is_cancelled(job_id) or self.stopping.is_set()

    # ------------------------------------------------------------------------------------------- graphs
    def _graph(self, job: JobRecord) -> None:
        req = GraphRequest.model_validate(job.request)
        traced = self._trace(job.id, req)
        if traced is None or self.events.is_cancelled(job.id):
            return  # finished another way, or finished anyway but the user no longer wants it
        graph, key = traced
        model, transcoders = self.host.names()
        summary = self.graphs.add(  # keyed by the cache key: a second run of the same job stores nothing new
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
        Requests queued while the model loaded (or by an API without one) were not checked: length and cache
        are checked here too."""
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
                should_cancel=lambda: self.cancelled(job_id),
            )
        except (PromptTooLong, EngineUnavailable) as e:
            self.queue.finish(job_id, "failed", error=str(e))
            return None
        except Exception as e:  # noqa: BLE001
            self._engine_failed(job_id, e)
            return None
        return graph, key

    # ------------------------------------------------------------------------------------------- validations
    def _validate(self, job: JobRecord) -> None:
        spec = ValidateJob.model_validate(job.request)
        data = self.graphs.get(spec.slug)
        problem = self._graph_problem(spec.slug, data)
        if problem is not None or data is None:
            self.queue.finish(job.id, "failed", error=problem)
            return
        report = self._progress_callback(job.id)

        def progress(p: ProgressEvent) -> None:
            if self.cancelled(job.id):  # the validation has no should_cancel: stop it from its progress
                raise AttributionCancelled()
            report(p)

        self._run_to_end(job.id, lambda: self.host.validate(data, spec.body, progress))

    # ------------------------------------------------------------------------------------------- atlases
    def _atlas(self, job: JobRecord) -> None:
        spec = AtlasJob.model_validate(job.request)
        if self.atlas is None:
            self.queue.finish(job.id, "failed", error="atlas: this worker was started without atlas building")
            return
        report = self._progress_callback(job.id)

        def progress(done: float, total: float, layer: int) -> None:
            if self.cancelled(job.id):  # build_atlas has no should_cancel: stop it from its progress
                raise AttributionCancelled()
            report(ProgressEvent(phase="atlas", done=int(done), total=int(total)))

        builder = self.atlas

        def build() -> BaseModel:
            device = self.host.require().info.device
            with self.host.model_lock:  # the same device as the model: one job at a time, interventions wait
                return builder.build(spec, device, progress)

        self._run_to_end(job.id, build)

    def _run_to_end(self, job_id: str, work: Callable[[], BaseModel]) -> None:
        """Run a validation's or an atlas build's work and record how it ended: its result, the host's refusal
        (no engine), or a failure."""
        try:
            result = work()
        except EngineUnavailable as e:
            self.queue.finish(job_id, "failed", error=str(e))
            return
        except Exception as e:  # noqa: BLE001
            self._engine_failed(job_id, e)
            return
        self.queue.finish(job_id, "done", result=result.model_dump(mode="json"))

    def _graph_problem(self, slug: str, data: dict[str, Any] | None) -> str | None:
        """Why the stored graph cannot be validated here, or None."""
        if data is None:
            return f"slug: the graph {slug!r} was deleted before its validation ran"
        try:
            names = LinkGraph.from_json(data).model_names()
        except GraphShapeError as e:
            return f"graph {slug!r}: {e}"
        if names != self.host.names():
            return f"graph: traced with {names[0]!r} / {names[1]!r}, not the loaded model"
        return None

    # ------------------------------------------------------------------------------------------- shared
    def _engine_failed(self, job_id: str, e: Exception) -> None:
        if self.events.is_cancelled(job_id):
            return  # the engine stopped because we asked it to; the job is already `cancelled`
        if self.stopping.is_set():
            self.on_interrupted(job_id)
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
