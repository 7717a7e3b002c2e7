"""Page routes: the single-page front end (frontend/dist) for /, /trace, /graph/{slug}, /diff/{a}/{b} and
/feature/{layer}/{index}."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

router = APIRouter(include_in_schema=False)

_NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>Circuitboard</title>
<p>The front end is not built ({index} is missing). Build it with <code>make frontend</code>;
the API is up: <a href="/docs">/docs</a>.</p>"""


def _index(request: Request) -> Response:
    index: Path = request.app.state.services.settings.frontend_dist / "index.html"
    if index.is_file():
        return FileResponse(index, headers={"Cache-Control": "no-cache"})
    return HTMLResponse(_NOT_BUILT.format(index=index), status_code=200)


@router.get("/")
def home(request: Request) -> Response:
    return _index(request)


@router.get("/trace")
def trace(request: Request) -> Response:
    return _index(request)


@router.get("/graph/{slug}")
def graph_page(slug: str, request: Request) -> Response:
    return _index(request)


@router.get("/diff/{a}/{b}")
def diff_page(a: str, b: str, request: Request) -> Response:
    return _index(request)


@router.get("/feature/{layer}/{index}")
def feature_page(layer: int, index: int, request: Request) -> Response:
    return _index(request)


def mount_static(app: FastAPI, dist: Path) -> None:
    """/static/ serves the built assets (dist/static when the build puts them there, else dist itself)."""
    static = dist / "static" if (dist / "static").is_dir() else dist
    if static.is_dir():
        app.mount("/static", StaticFiles(directory=static), name="static")
