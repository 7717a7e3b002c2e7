"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from circuitboard import __version__
from circuitboard.api import errors
from circuitboard.api.deps import Services
from circuitboard.api.engine_factory import default_engine_factory
from circuitboard.api.routes import (
    features,
    graphs,
    imports,
    interventions,
    jobs,
    meta,
    pages,
    subgraphs,
    tokenize,
)
from circuitboard.config import Settings
from circuitboard.engine.types import param_ranges
from circuitboard.jobs import EngineHost, JobService
from circuitboard.jobs.host import EngineFactory
from circuitboard.store import Store

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, engine_factory: EngineFactory | None = None) -> FastAPI:
    """`engine_factory` returns a loaded Engine; it runs on the worker thread after startup, so the API
    answers (health says "loading") while a large model loads. Without one, the factory loads
    `settings`' preset or model/transcoder paths, unless `settings.load_engine` is False."""
    settings = settings or Settings()
    ranges = param_ranges(settings.params)  # here, so that a bad override stops the server before it starts
    factory: EngineFactory | None
    if not settings.load_engine:
        factory = None
    else:
        factory = engine_factory or default_engine_factory(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Migrations run here, before the first request, in a thread: they touch the disk.
        store = await run_in_threadpool(Store, settings.resolved_database_url)
        host = EngineHost(factory, settings.max_prompt_tokens)
        job_service = JobService(store, host, settings)
        await run_in_threadpool(job_service.start)
        app.state.services = Services(settings=settings, store=store, host=host, jobs=job_service, ranges=ranges)
        try:
            yield
        finally:
            await run_in_threadpool(job_service.stop)
            store.close()

    app = FastAPI(
        title="Circuitboard",
        version=__version__,
        description="Attribution graphs of language models with transcoders.",
        lifespan=lifespan,
    )
    errors.install(app)
    for module in (meta, tokenize, graphs, imports, jobs, subgraphs, interventions, features):
        app.include_router(module.router)
    app.include_router(pages.router)
    pages.mount_static(app, settings.frontend_dist)
    return app
