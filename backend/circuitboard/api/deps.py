"""What the routes share: the settings, the store, the engine host and the job service (one per app)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from circuitboard.config import Settings
from circuitboard.jobs import EngineHost, JobService
from circuitboard.store import Store


@dataclass
class Services:
    settings: Settings
    store: Store
    host: EngineHost
    jobs: JobService


def services(request: Request) -> Services:
    return request.app.state.services
