"""Job events across processes (distributed mode): what JobEvents keeps in memory, kept in Redis instead.

- every change of a job is PUBLISHed on `cb:events:{job_id}`; each API replica runs one relay thread that
  pattern-subscribes to all of them and hands them to its local subscribers (the SSE streams), so progress from
  any worker reaches the stream of any replica;
- the running job's latest view is also SET at `cb:live:{job_id}`, so a status read on any replica shows it;
- a cancel is the key `cb:cancel:{job_id}`, which the worker's `should_cancel` polls (at most every 0.2 s).
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from circuitboard.jobs.events import JobEvents
from circuitboard.jobs.models import JobView

log = logging.getLogger(__name__)

PREFIX = "cb"
_LIVE_TTL_S = 3600
_CANCEL_TTL_S = 86_400
_CANCEL_POLL_S = 0.2


def events_channel(job_id: str) -> str:
    return f"{PREFIX}:events:{job_id}"


class RedisJobEvents(JobEvents):
    def __init__(self, client: redis.Redis) -> None:
        super().__init__()
        self.client = client
        self._checked: dict[str, float] = {}  # job id -> when its cancel key was last read
        self._relay: threading.Thread | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------------------------- publishing
    def publish(self, view: JobView) -> None:
        """To every replica's subscribers (through Redis, this process's own included); never raises: a lost
        event is a stale progress bar, and the database has the truth."""
        data = view.model_dump_json()
        try:
            pipe = self.client.pipeline(transaction=False)
            if view.status == "running":
                pipe.set(f"{PREFIX}:live:{view.id}", data, ex=_LIVE_TTL_S)
            pipe.publish(events_channel(view.id), data)
            pipe.execute()
        except redis.RedisError as e:
            log.warning("could not publish the event of job %s: %s", view.id, e)

    def live(self, job_id: str) -> JobView | None:
        """The running job's view: from memory in the worker that runs it, else from Redis."""
        own = super().live(job_id)
        if own is not None:
            return own
        try:
            data = self.client.get(f"{PREFIX}:live:{job_id}")
        except redis.RedisError:
            return None
        return None if data is None else JobView.model_validate_json(data)

    def forget(self, job_id: str) -> None:
        super().forget(job_id)
        self._checked.pop(job_id, None)
        try:
            self.client.delete(f"{PREFIX}:live:{job_id}")
        except redis.RedisError:
            pass  # it expires

    # ------------------------------------------------------------------------------------- cancelling
    def request_cancel(self, job_id: str) -> None:
        super().request_cancel(job_id)
        self.client.set(f"{PREFIX}:cancel:{job_id}", "1", ex=_CANCEL_TTL_S)

    def is_cancelled(self, job_id: str) -> bool:
        if super().is_cancelled(job_id):
            return True
        now = time.monotonic()
        if now - self._checked.get(job_id, 0.0) < _CANCEL_POLL_S:
            return False
        self._checked[job_id] = now
        try:
            cancelled = bool(self.client.exists(f"{PREFIX}:cancel:{job_id}"))
        except redis.RedisError:
            return False  # Redis away: keep running; the database's status still says what the user wants
        if cancelled:
            super().request_cancel(job_id)
        return cancelled

    # ------------------------------------------------------------------------------------- the relay
    def start_relay(self) -> None:
        """API replicas: subscribe to every job's events and hand them to this process's subscribers."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        pubsub.psubscribe(f"{PREFIX}:events:*")
        pubsub.get_message(timeout=1.0)  # the subscription is confirmed before the first stream opens
        self._relay = threading.Thread(target=self._relay_loop, args=(pubsub,), name="circuitboard-relay", daemon=True)
        self._relay.start()

    def _relay_loop(self, pubsub: redis.client.PubSub) -> None:
        while not self._stopping.is_set():
            try:
                msg = pubsub.get_message(timeout=0.5)
            except redis.RedisError as e:
                log.warning("job events: lost Redis (%s); subscribing again", e)
                self._stopping.wait(1.0)
                pubsub = self._resubscribe(pubsub)
                continue
            if msg is not None and msg.get("type") == "pmessage":
                try:
                    self.broker.publish(JobView.model_validate_json(msg["data"]))
                except ValueError:
                    log.warning("job events: unreadable message on %s", msg.get("channel"))
        pubsub.close()

    def _resubscribe(self, old: redis.client.PubSub) -> redis.client.PubSub:
        try:
            old.close()
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            pubsub.psubscribe(f"{PREFIX}:events:*")
            return pubsub
        except redis.RedisError:
            return old

    def close(self) -> None:
        self._stopping.set()
        super().close()
        if self._relay is not None:
            self._relay.join(2.0)
