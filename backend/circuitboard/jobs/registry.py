"""Which workers are alive, per preset: each `circuitboard worker` SETs `cb:worker:{preset}:{name}` (its engine's
state and EngineInfo) every `Settings.worker_heartbeat_s`, with a time to live of three beats, so a killed worker
drops out within seconds. The API reads them for `GET /api/config` and to refuse (503) a preset without one."""

from __future__ import annotations

import os
import socket
import uuid

import redis
from pydantic import BaseModel

from circuitboard.engine.types import EngineInfo
from circuitboard.jobs.models import EngineState
from circuitboard.jobs.redis_events import PREFIX

_BEATS_TO_LIVE = 3


class Heartbeat(BaseModel):
    name: str
    preset: str
    state: EngineState
    info: EngineInfo | None = None
    error: str | None = None


def worker_name() -> str:
    """Unique per process: host, pid and a random part (pids repeat across containers)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class WorkerRegistry:
    def __init__(self, client: redis.Redis, beat_s: float) -> None:
        self.client = client
        self.ttl_ms = max(1, int(beat_s * _BEATS_TO_LIVE * 1000))

    @staticmethod
    def _key(preset: str, name: str) -> str:
        return f"{PREFIX}:worker:{preset}:{name}"

    def beat(self, hb: Heartbeat) -> None:
        self.client.set(self._key(hb.preset, hb.name), hb.model_dump_json(), px=self.ttl_ms)

    def leave(self, preset: str, name: str) -> None:
        self.client.delete(self._key(preset, name))

    def alive(self, preset: str, name: str) -> bool:
        return bool(self.client.exists(self._key(preset, name)))

    def workers(self, preset: str | None = None) -> list[Heartbeat]:
        """Live workers: of one preset, or of all."""
        pattern = self._key(preset or "*", "*")
        keys = list(self.client.scan_iter(match=pattern, count=500))
        if not keys:
            return []
        out = []
        for data in self.client.mget(keys):
            if data is not None:  # expired between the scan and the read
                out.append(Heartbeat.model_validate_json(data))
        return sorted(out, key=lambda h: (h.preset, h.name))
