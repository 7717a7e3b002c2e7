"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware

from circuitboard import __version__
from circuitboard.api import docs, errors
from circuitboard.api.deps import Services
from circuitboard.api.engine_factory import default_engine_factory
from circuitboard.api.limits import RateLimiter
from circuitboard.api.routes import (
    analysis,
    atlas,
    estimate,
    features,
    graphs,
    imports,
    interventions,
    jobs,
    meta,
    pages,
    session,
    subgraphs,
    tokenize,
)
from circuitboard.api.security import RequestGuard
from circuitboard.config import Settings
from circuitboard.engine.types import param_ranges
from circuitboard.jobs import EngineHost, JobService, ModelCalls
from circuitboard.jobs.atlas import AtlasBuilder
from circuitboard.jobs.host import EngineFactory
from circuitboard.jobs.transport import LocalTransport, Transport
from circuitboard.store import Store

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, engine_factory: EngineFactory | None = None) -> FastAPI:
    """`engine_factory` returns a loaded Engine; it runs on the worker thread after startup, so the API
    answers (health says "loading") while a large model loads. Without one, the factory loads
    `settings`' preset or model/transcoder paths, unless `settings.load_engine` is False. With
    `settings.queue_url` the app loads no model: `circuitboard worker` processes run its jobs."""
    settings = settings or Settings()
    ranges = param_ranges(settings.params)  # here, so that a bad override stops the server before it starts
    limiter = RateLimiter(settings.rate_limits, settings.queue_url)  # likewise a rate `limits` cannot read
    factory: EngineFactory | None
    if not settings.load_engine or settings.queue_url:
        factory = None
    else:
        factory = engine_factory or default_engine_factory(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Migrations run here, before the first request, in a thread: they touch the disk.
        store = await run_in_threadpool(Store, settings.resolved_database_url)
        job_service = JobService(store, _transport(settings, factory), settings)
        await run_in_threadpool(job_service.start)
        pending = settings.max_pending_interventions
        app.state.services = Services(
            settings=settings,
            store=store,
            host=job_service.host,
            jobs=job_service,
            ranges=ranges,
            limiter=limiter,
            interventions=ModelCalls("interventions", threads=2, max_pending=pending),
            previews=ModelCalls("previews", threads=2, max_pending=pending),
        )
        try:
            yield
        finally:
            app.state.services.interventions.close()
            app.state.services.previews.close()
            await run_in_threadpool(job_service.stop)
            store.close()

    app = FastAPI(
        title="Circuitboard",
        version=__version__,
        description="Attribution graphs of language models with transcoders.",
        lifespan=lifespan,
        docs_url=None,  # served from local files by api/docs.py
        redoc_url=None,
    )
    errors.install(app)
    # The last one added runs first: the Host check, then the guard (origin, who is asking, headers).
    app.add_middleware(RequestGuard, auth_required=settings.auth_required)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts)
    for module in (meta, session, tokenize, graphs, imports, jobs, subgraphs, interventions, features):
        app.include_router(module.router)
    app.include_router(analysis.router)
    app.include_router(estimate.router)
    app.include_router(atlas.router)
    app.include_router(pages.router)
    docs.install(app)
    pages.mount_static(app, settings.frontend_dist)
    return app


def _transport(settings: Settings, factory: EngineFactory | None) -> Transport:
    if settings.queue_url:
        from circuitboard.jobs.distributed import RedisTransport  # Redis clients: only in distributed mode

        return RedisTransport(settings)
    host = EngineHost(factory, settings.max_prompt_tokens)
    return LocalTransport(host, settings.preset, atlas=AtlasBuilder(settings))
