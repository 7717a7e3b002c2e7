"""Distributed mode on Redis: jobs travel as Dramatiq messages, one queue per preset (`cb.{preset}`); the job
record in the database stays the source of truth (status, attempts, result), the message only says "run job X".

Dramatiq's Redis broker acknowledges a message after the actor returns; a worker that dies mid-job stops its
broker heartbeats, and after `Settings.queue_heartbeat_timeout_ms` the queue maintenance of any other consumer of
that queue puts its unacknowledged message back, so another worker runs the job again (the record counts the
attempts: past `max_job_attempts` the job fails with a message). No Dramatiq middleware: no retries (a failed
job is failed, with its message), no time limit (a trace takes what it takes), no age limit.
"""

from __future__ import annotations

import logging

import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from circuitboard.config import Settings
from circuitboard.jobs.host import ModelHost
from circuitboard.jobs.queue import JobQueue
from circuitboard.jobs.redis_events import PREFIX, RedisJobEvents
from circuitboard.jobs.registry import WorkerRegistry
from circuitboard.jobs.remote import RemoteHost
from circuitboard.jobs.transport import PresetStatus
from circuitboard.store import Store
from circuitboard.store.records import JobRecord

log = logging.getLogger(__name__)

ACTOR = "circuitboard_job"


def queue_of(preset: str) -> str:
    return f"cb.{preset}"


def make_broker(settings: Settings) -> RedisBroker:
    assert settings.queue_url
    return RedisBroker(
        url=settings.queue_url,
        middleware=[],
        namespace=f"{PREFIX}-dramatiq",
        heartbeat_timeout=settings.queue_heartbeat_timeout_ms,
        maintenance_chance=settings.queue_maintenance_chance,
    )


def send_job(broker: RedisBroker, preset: str, job_id: str) -> None:
    queue = queue_of(preset)
    broker.declare_queue(queue)
    broker.enqueue(Message(queue_name=queue, actor_name=ACTOR, args=(job_id,), kwargs={}, options={}))


def resend_lost(store: Store, broker: RedisBroker, preset: str, older_than_s: float) -> list[str]:
    """Send again the jobs of `preset` queued for longer than `older_than_s` (an idle worker calls this: a job
    still queued while a worker of its preset is idle has lost its message: Redis restarted empty, or the API
    died between writing the job and sending it). A duplicate message is harmless: the claim in the database
    runs a job once."""
    ids = store.jobs.queued_ids(preset, older_than_s=older_than_s)
    for job_id in ids:
        send_job(broker, preset, job_id)
    return ids


class RedisTransport:
    """The API's side: enqueue to the preset's queue, hosts that ask the preset's workers, the live presets."""

    def __init__(self, settings: Settings) -> None:
        assert settings.queue_url
        self.settings = settings
        self.client = redis.Redis.from_url(settings.queue_url)
        self.broker = make_broker(settings)
        self.registry = WorkerRegistry(self.client, settings.worker_heartbeat_s)
        self.events = RedisJobEvents(self.client)
        self._hosts: dict[str, RemoteHost] = {}

    def start(self, queue: JobQueue, store: Store) -> None:
        self.events.start_relay()

    def stop(self, timeout: float) -> None:
        self.events.close()
        self.broker.close()
        self.client.close()

    def host(self, preset: str | None = None) -> ModelHost:
        name = preset or self.settings.preset
        if name not in self._hosts:
            self._hosts[name] = RemoteHost(self.client, self.registry, name, self.settings.max_prompt_tokens)
        return self._hosts[name]

    def queue_name(self, preset: str | None = None) -> str | None:
        return preset or self.settings.preset

    def dispatch(self, job: JobRecord) -> None:
        assert job.queue is not None
        send_job(self.broker, job.queue, job.id)

    def presets(self) -> list[PresetStatus]:
        by_preset: dict[str, PresetStatus] = {}
        for hb in self.registry.workers():
            status = by_preset.setdefault(hb.preset, PresetStatus(name=hb.preset, workers=0))
            if hb.state == "ready":
                status.workers += 1
                status.model = status.model or hb.info
        return [p for p in by_preset.values() if p.workers > 0]
