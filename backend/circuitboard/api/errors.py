"""Turning domain errors into 4xx answers that name the field, never a 500."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from circuitboard.jobs import (
    EngineBusy,
    EngineUnavailable,
    InvalidTarget,
    JobFinished,
    JobNotFound,
    PromptTooLong,
    QueueFull,
    SlugTaken,
)


def field_error(loc: tuple[str | int, ...], msg: str, value: Any = None) -> RequestValidationError:
    """A validation error in FastAPI's own list form, for checks pydantic cannot express statically."""
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": msg, "input": value}])


def _detail(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(EngineUnavailable)
    async def _engine_unavailable(_: Request, exc: EngineUnavailable) -> JSONResponse:
        headers = {"Retry-After": "5"} if exc.state == "loading" else None
        return _detail(503, str(exc), headers)

    @app.exception_handler(EngineBusy)
    async def _engine_busy(_: Request, exc: EngineBusy) -> JSONResponse:
        return _detail(503, str(exc), {"Retry-After": "5"})

    @app.exception_handler(QueueFull)
    async def _queue_full(_: Request, exc: QueueFull) -> JSONResponse:
        return _detail(429, str(exc), {"Retry-After": "10"})

    @app.exception_handler(PromptTooLong)
    async def _too_long(request: Request, exc: PromptTooLong) -> JSONResponse:
        return await request_validation_exception_handler(
            request, field_error(("body", "prompt"), str(exc), exc.n_tokens)
        )

    @app.exception_handler(InvalidTarget)
    async def _bad_target(request: Request, exc: InvalidTarget) -> JSONResponse:
        return await request_validation_exception_handler(
            request, field_error(("body", "target_tokens", exc.index), str(exc))
        )

    @app.exception_handler(SlugTaken)
    async def _slug_taken(_: Request, exc: SlugTaken) -> JSONResponse:
        return _detail(409, str(exc))

    @app.exception_handler(JobNotFound)
    async def _job_not_found(_: Request, exc: JobNotFound) -> JSONResponse:
        return _detail(404, str(exc))

    @app.exception_handler(JobFinished)
    async def _job_finished(_: Request, exc: JobFinished) -> JSONResponse:
        return _detail(409, str(exc))
