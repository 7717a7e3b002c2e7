"""How accepted jobs reach a worker: the one small interface between the job service and its workers.

`LocalTransport` (the default: `make run`, no Redis) owns the worker thread of this process and its engine host.
`RedisTransport` (jobs/distributed.py, chosen by `Settings.queue_url`) sends each job to its preset's queue on
Redis, where `circuitboard worker` processes consume it; this process then loads no model."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

from circuitboard.engine.types import EngineInfo
from circuitboard.jobs.atlas import AtlasBuilder
from circuitboard.jobs.events import JobEvents
from circuitboard.jobs.host import EngineHost, EngineUnavailable, ModelHost
from circuitboard.jobs.queue import JobQueue
from circuitboard.jobs.worker import Worker
from circuitboard.store import Store
from circuitboard.store.records import JobRecord


class PresetStatus(BaseModel):
    """A preset that can take jobs now: its name, its model, and how many workers serve it."""

    name: str
    workers: int
    model: EngineInfo | None = None


class Transport(Protocol):
    @property
    def events(self) -> JobEvents: ...

    def start(self, queue: JobQueue, store: Store) -> None: ...

    def stop(self, timeout: float) -> None: ...

    def host(self, preset: str | None = None) -> ModelHost:
        """The host that checks requests for `preset` (None: the server's own); raises EngineUnavailable
        (503) naming a preset no worker serves."""
        ...

    def queue_name(self, preset: str | None = None) -> str | None:
        """What the job record names as its queue: None when the local worker runs every job."""
        ...

    def dispatch(self, job: JobRecord) -> None: ...

    def presets(self) -> list[PresetStatus]: ...


class LocalTransport:
    """The worker thread of this process: it claims the oldest queued job from the database itself."""

    def __init__(self, host: EngineHost, preset: str, atlas: AtlasBuilder | None = None) -> None:
        self._host = host
        self.preset = preset
        self.atlas = atlas
        self.events = JobEvents()
        self._worker: Worker | None = None

    def start(self, queue: JobQueue, store: Store) -> None:
        if self._host.state == "none":
            return  # without a model, queued jobs wait for a server that has one
        self._worker = Worker(self._host, queue, self.events, store.graphs, self.atlas)
        self._worker.start()

    def stop(self, timeout: float) -> None:
        self.events.close()
        if self._worker is not None:
            self._worker.stop(timeout)

    def host(self, preset: str | None = None) -> ModelHost:
        if preset is not None and preset != self.preset:  # one model here: another preset has no worker
            raise EngineUnavailable(
                "none", f"preset: no worker serves {preset!r} here (this server runs {self.preset!r})"
            )
        return self._host

    def queue_name(self, preset: str | None = None) -> str | None:
        return None

    def dispatch(self, job: JobRecord) -> None:
        if self._worker is not None:
            self._worker.wake.set()

    def presets(self) -> list[PresetStatus]:
        info = self._host.info
        return [PresetStatus(name=self.preset, workers=1, model=info)] if info is not None else []
