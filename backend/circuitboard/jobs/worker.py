"""The local worker thread (single-process mode): loads the engine, then runs queued jobs one at a time.

It claims the oldest queued job from the database and hands it to the JobRunner; distributed workers
(jobs/distributed.py) run the same JobRunner on jobs their queue messages name."""

from __future__ import annotations

import logging
import threading
import traceback

from circuitboard.jobs.atlas import AtlasBuilder
from circuitboard.jobs.events import JobEvents
from circuitboard.jobs.host import EngineHost
from circuitboard.jobs.queue import JobQueue
from circuitboard.jobs.runner import JobRunner
from circuitboard.store.graphs import GraphRepository

log = logging.getLogger(__name__)


class Worker(threading.Thread):
    def __init__(
        self,
        host: EngineHost,
        queue: JobQueue,
        events: JobEvents,
        graphs: GraphRepository,
        atlas: AtlasBuilder | None = None,
    ) -> None:
        super().__init__(name="circuitboard-worker", daemon=True)
        self.host, self.queue = host, queue
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.runner = JobRunner(host, queue, events, graphs, self.stopping, atlas=atlas)

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
            self.runner.run(job)
