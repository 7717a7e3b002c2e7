"""What the routes share: the services of one app (settings, store, engine host, job service) and the atlas."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from circuitboard.api.limits import RateLimiter
from circuitboard.atlas.store import AtlasStore
from circuitboard.config import Settings
from circuitboard.jobs import JobService, ModelCalls
from circuitboard.jobs.atlas import atlas_path  # one home: where atlas jobs write it
from circuitboard.jobs.host import ModelHost
from circuitboard.ranges import ParamRange
from circuitboard.store import Store


@dataclass
class Services:
    settings: Settings
    store: Store
    host: ModelHost  # of the server's own preset: this process's engine, or its workers' (distributed mode)
    jobs: JobService
    ranges: dict[str, ParamRange]  # of the attribution parameters, under these settings (GET /api/config)
    limiter: RateLimiter
    interventions: ModelCalls  # the threads interventions wait on, never the request threads
    previews: ModelCalls  # likewise for the token preview


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


ServicesDep = Annotated[Services, Depends(services)]


# ------------------------------------------------------------------------------------------- the atlas
# A SQLite file next to the transcoders (models/<preset>/atlas.sqlite), looked up per request so that an atlas
# built while the server runs (an atlas job, or the CLI) is served without a restart.


def get_atlas(request: Request) -> AtlasStore:
    """`app.state.atlas` when set (an AtlasStore or a path: tests and embedders), else the services' atlas."""
    state = request.app.state
    given = getattr(state, "atlas", None)
    if isinstance(given, AtlasStore):
        return given
    svc = getattr(state, "services", None)
    path = Path(given) if given is not None else atlas_path(svc.settings) if svc is not None else None
    if path is None or not path.is_file():
        where = f" at {path}" if path else ""
        hint = "`circuitboard atlas build` or POST /api/presets/{preset}/atlas"
        raise HTTPException(404, f"no feature atlas{where}; build it with {hint}")
    if not hasattr(state, "atlas_stores"):
        state.atlas_stores = {}
    cache: dict[Path, AtlasStore] = state.atlas_stores
    store = cache.get(path)
    # a rebuilt atlas (new build hash) must not be read through the old store's token caches
    build = AtlasStore.peek_build_hash(path)
    if store is None or store.build_hash != build:
        store = cache[path] = AtlasStore(path)
        store.build_hash = build
    return store


AtlasDep = Annotated[AtlasStore, Depends(get_atlas)]
