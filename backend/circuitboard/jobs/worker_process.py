"""A distributed worker process (`circuitboard worker --preset NAME`): one engine, loaded once; one Dramatiq worker
thread consuming the preset's queue (one process = one model = one job at a time); a heartbeat in Redis; the
threads that answer the API's calls (token ids, previews, interventions) through the same engine host."""

from __future__ import annotations

import logging
import threading
import time
import traceback

import dramatiq
import redis
from dramatiq import Worker as DramatiqWorker

from circuitboard.config import Settings
from circuitboard.jobs.atlas import AtlasBuilder
from circuitboard.jobs.distributed import ACTOR, make_broker, queue_of, resend_lost, send_job
from circuitboard.jobs.host import EngineFactory, EngineHost
from circuitboard.jobs.queue import JobQueue
from circuitboard.jobs.redis_events import RedisJobEvents
from circuitboard.jobs.registry import Heartbeat, WorkerRegistry, worker_name
from circuitboard.jobs.remote import CallServer
from circuitboard.jobs.runner import JobRunner
from circuitboard.store import Store

log = logging.getLogger(__name__)


class WorkerProcess:
    def __init__(self, settings: Settings, preset: str, factory: EngineFactory) -> None:
        assert settings.queue_url, "a worker needs the queue: --queue redis://... or CIRCUITBOARD_QUEUE_URL"
        self.settings, self.preset = settings, preset
        self.name = worker_name()
        self.client = redis.Redis.from_url(settings.queue_url)
        self.registry = WorkerRegistry(self.client, settings.worker_heartbeat_s)
        self.store = Store(settings.resolved_database_url)
        self.events = RedisJobEvents(self.client)
        self.queue = JobQueue(self.store.jobs, self.events)
        self.host = EngineHost(factory, settings.max_prompt_tokens)
        self.stopping = threading.Event()
        self.idle_since: float | None = time.monotonic()  # None while a job runs
        self.broker = make_broker(settings)
        self.runner = JobRunner(
            self.host,
            self.queue,
            self.events,
            self.store.graphs,
            self.stopping,
            on_interrupted=self._hand_back,
            atlas=AtlasBuilder(settings),
        )
        self.calls = CallServer(self.client, self.host, preset)
        self._beat = threading.Thread(target=self._beat_loop, name="circuitboard-heartbeat", daemon=True)
        self._dramatiq: DramatiqWorker | None = None

    # ------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Beat (state "loading"), load the engine, then take calls and jobs."""
        self._heartbeat()
        self._beat.start()
        self.host.load()
        self._heartbeat()
        if self.host.state != "ready":
            log.error("worker %s: the engine did not load (%s); serving no jobs", self.name, self.host.error)
            return
        self.calls.start()
        dramatiq.actor(broker=self.broker, actor_name=ACTOR, queue_name=queue_of(self.preset))(self.handle)
        worker = DramatiqWorker(
            self.broker, queues={queue_of(self.preset)}, worker_threads=1, worker_timeout=self.settings.queue_poll_ms
        )
        worker.queue_prefetch = 1  # one message at a time: a second one waits in Redis for a free worker
        worker.start()
        self._dramatiq = worker
        log.info("worker %s: serving preset %r on %s", self.name, self.preset, queue_of(self.preset))

    def stop(self, timeout_s: float = 10.0) -> None:
        """A running job is handed back to the queue (not counted as an attempt), then everything closes."""
        self.stopping.set()
        if self._dramatiq is not None:
            self._dramatiq.stop(timeout=int(timeout_s * 1000))
        self.calls.stop()
        self._beat.join(timeout_s)
        try:
            self.registry.leave(self.preset, self.name)
        except redis.RedisError:
            pass  # it expires
        self.events.close()
        self.broker.close()
        self.store.close()

    # ------------------------------------------------------------------------------------------- jobs
    def handle(self, job_id: str) -> None:
        """The actor: run the job the message names, unless it has ended or another live worker runs it."""
        self.idle_since = None
        try:
            rec = self.store.jobs.get(job_id)
            if rec is None or rec.terminal:
                return  # cancelled while queued, or a duplicate message of a finished job
            if rec.status == "running" and rec.worker and rec.worker != self.name:
                if self.registry.alive(self.preset, rec.worker):
                    return  # a duplicate message: its worker is alive and runs it
            claimed = self.store.jobs.claim(job_id, self.name, self.settings.max_job_attempts)
            if claimed is None:
                return
            if claimed.status == "failed":  # its worker died once too often: tell the subscribers
                self.queue.published(claimed)
            elif claimed.status == "running" and claimed.worker == self.name:
                self.runner.run(claimed)
        except Exception:  # noqa: BLE001 - an actor that raises would dead-letter the message; the record decides
            log.error("worker %s: job %s:\n%s", self.name, job_id, traceback.format_exc())
        finally:
            self.idle_since = time.monotonic()

    def _hand_back(self, job_id: str) -> None:
        """Stopping mid-job: back to the queue, with a new message (this one is acknowledged as the actor returns)."""
        if self.queue.requeue_interrupted(job_id):
            send_job(self.broker, self.preset, job_id)

    # ------------------------------------------------------------------------------------------- heartbeat
    def _heartbeat(self) -> None:
        hb = Heartbeat(
            name=self.name, preset=self.preset, state=self.host.state, info=self.host.info, error=self.host.error
        )
        self.registry.beat(hb)

    def _resend_lost(self) -> None:
        """Idle for `queue_lost_after_s` while jobs of the preset were queued for as long: their messages are lost."""
        after = self.settings.queue_lost_after_s
        idle = self.idle_since
        if self._dramatiq is None or idle is None or time.monotonic() - idle < after:
            return
        lost = resend_lost(self.store, self.broker, self.preset, after)
        if lost:
            log.warning("worker %s: sent lost jobs again: %s", self.name, lost)

    def _beat_loop(self) -> None:
        while not self.stopping.wait(self.settings.worker_heartbeat_s):
            try:
                self._heartbeat()
                self._resend_lost()
            except Exception as e:  # noqa: BLE001 - Redis or the database away for a moment: beat again later
                log.warning("worker %s: heartbeat failed: %s", self.name, e)
