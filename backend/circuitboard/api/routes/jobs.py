"""Jobs: status, live progress as server-sent events, the result of a non-graph job, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from circuitboard.api.auth import PrincipalDep, forbidden
from circuitboard.api.deps import ServicesDep
from circuitboard.jobs import JobState, JobView

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

_KEEPALIVE_S = 15.0


def _not_found(job_id: str) -> HTTPException:
    return HTTPException(404, f"job: no job {job_id!r}")


@router.get("/{job_id}", response_model=JobView)
def job_status(job_id: str, svc: ServicesDep) -> JobView:
    view = svc.jobs.status(job_id)
    if view is None:
        raise _not_found(job_id)
    return view


def _sse(view: JobView) -> bytes:
    return f"event: {view.event}\ndata: {view.model_dump_json()}\n\n".encode()


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "queued, progress, done|failed|cancelled"}},
)
async def job_events(job_id: str, svc: ServicesDep) -> StreamingResponse:
    # Subscribe before reading the current state, so an event between the two is not lost.
    sub = svc.jobs.subscribe(job_id)
    first = await run_in_threadpool(svc.jobs.status, job_id)
    if first is None:
        sub.close()
        raise _not_found(job_id)

    async def stream() -> AsyncIterator[bytes]:
        with sub:
            yield _sse(first)
            if first.status in ("done", "failed", "cancelled"):
                return
            while True:
                try:
                    view = await sub.get(_KEEPALIVE_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"  # lets proxies and the browser know the stream is alive
                    continue
                except asyncio.CancelledError:
                    return
                if view is None:  # server shutting down; the browser's EventSource reconnects
                    return
                yield _sse(view)
                if view.status in ("done", "failed", "cancelled"):
                    return

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        background=BackgroundTask(sub.close),  # also when the client left before the stream started
    )


@router.get(
    "/{job_id}/result",
    responses={200: {"description": "the job's result: a ValidationResult for a validate job"}, 409: {}},
)
def job_result(job_id: str, svc: ServicesDep) -> dict[str, Any]:
    """404 no such job, 409 not done yet (or a graph job: its result is the graph at `slug`)."""
    return svc.jobs.result(job_id)


@router.delete("/{job_id}", response_model=JobState)
def cancel_job(job_id: str, svc: ServicesDep, who: PrincipalDep) -> JobState:
    exists, owner = svc.jobs.owner(job_id)
    if exists and not who.may_change(owner):
        raise forbidden(f"job {job_id!r}")
    return svc.jobs.cancel(job_id)
