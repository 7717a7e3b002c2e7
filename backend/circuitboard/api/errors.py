"""Turning domain errors into 4xx answers that name the field, never a 500.

Validation errors echo the offending input; the handler here makes every such echo serialisable (NaN and
Infinity as text, lone surrogates escaped, long values cut), since FastAPI's own handler fails on exactly the
inputs it is rejecting and answers 500."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from circuitboard.jobs import (
    EngineBusy,
    EngineUnavailable,
    InvalidTarget,
    JobFinished,
    JobNotDone,
    JobNotFound,
    PromptTooLong,
    QueueFull,
    SlugTaken,
)
from circuitboard.store import SlugUnavailable, TooManyViews


def field_error(loc: tuple[str | int, ...], msg: str, value: Any = None) -> RequestValidationError:
    """A validation error in FastAPI's own list form, for checks pydantic cannot express statically."""
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": msg, "input": value}])


def _detail(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": safe_json(message)}, status_code=status, headers=headers)


_MAX_TEXT = 300
_MAX_ITEMS = 20
_MAX_DEPTH = 4


def safe_json(value: Any, depth: int = 0) -> Any:
    """`value` as JSON can always carry it: finite numbers, valid Unicode, short and shallow."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        text = value if value.isascii() else value.encode("utf-8", "backslashreplace").decode("utf-8")
        return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"
    if depth >= _MAX_DEPTH:
        return "…"
    if isinstance(value, dict):
        items = list(value.items())[:_MAX_ITEMS]
        return {str(safe_json(k, depth + 1)): safe_json(v, depth + 1) for k, v in items}
    if isinstance(value, Sequence | set | frozenset):
        return [safe_json(v, depth + 1) for v in list(value)[:_MAX_ITEMS]]
    return safe_json(str(value), depth)


def _validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        item = {"type": err.get("type"), "loc": safe_json(list(err.get("loc", ())))}
        item["msg"] = safe_json(str(err.get("msg", "")))
        if "input" in err:
            item["input"] = safe_json(err["input"])
        if "ctx" in err:
            item["ctx"] = safe_json(err["ctx"])
        out.append(item)
    return out


def validation_response(exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _validation_errors(exc.errors())}, status_code=422)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_response(exc)

    @app.exception_handler(UnicodeEncodeError)
    async def _not_unicode(_: Request, exc: UnicodeEncodeError) -> JSONResponse:
        # a lone surrogate where pydantic reads names (an object key) or a library encodes text
        return validation_response(
            field_error(("body",), "body: text must be valid Unicode (it holds a lone surrogate such as \\ud800)")
        )

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": safe_json(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

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
    async def _too_long(_: Request, exc: PromptTooLong) -> JSONResponse:
        return validation_response(field_error(("body", "prompt"), str(exc), exc.n_tokens))

    @app.exception_handler(InvalidTarget)
    async def _bad_target(_: Request, exc: InvalidTarget) -> JSONResponse:
        return validation_response(field_error(("body", exc.field, exc.index), str(exc)))

    @app.exception_handler(SlugTaken)
    async def _slug_taken(_: Request, exc: SlugTaken) -> JSONResponse:
        return _detail(409, str(exc))

    @app.exception_handler(SlugUnavailable)
    async def _no_slug(_: Request, exc: SlugUnavailable) -> JSONResponse:
        return _detail(409, f"slug: no free slug for {exc}; choose another")

    @app.exception_handler(TooManyViews)
    async def _too_many_views(_: Request, exc: TooManyViews) -> JSONResponse:
        return _detail(409, str(exc))

    @app.exception_handler(JobNotFound)
    async def _job_not_found(_: Request, exc: JobNotFound) -> JSONResponse:
        return _detail(404, str(exc))

    @app.exception_handler(JobFinished)
    async def _job_finished(_: Request, exc: JobFinished) -> JSONResponse:
        return _detail(409, str(exc))

    @app.exception_handler(JobNotDone)
    async def _job_not_done(_: Request, exc: JobNotDone) -> JSONResponse:
        return _detail(409, str(exc))
