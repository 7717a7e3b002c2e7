"""/docs (Swagger UI) and /redoc from local files, so they work offline and under a CSP without inline scripts.

The Swagger UI and ReDoc bundles come from the `fastapi-offline` package's static folder (only its files are
used); the few lines that start Swagger UI are served as a script of our own instead of an inline one."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
router = APIRouter(include_in_schema=False)

_SWAGGER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Circuitboard API</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css"><link rel="icon" href="{assets}/favicon.png"></head>
<body><div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script><script src="{assets}/swagger-init.js"></script>
</body></html>"""

_REDOC = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Circuitboard API</title>
<link rel="icon" href="{assets}/favicon.png"></head>
<body><redoc spec-url="/openapi.json"></redoc><script src="{assets}/redoc.standalone.js"></script></body></html>"""

_SWAGGER_INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""


def assets_dir() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


@router.get("/docs")
def swagger() -> HTMLResponse:
    return HTMLResponse(_SWAGGER.format(assets=ASSETS_URL))


@router.get("/redoc")
def redoc() -> HTMLResponse:
    return HTMLResponse(_REDOC.format(assets=ASSETS_URL))


@router.get(f"{ASSETS_URL}/swagger-init.js")
def swagger_init() -> Response:
    return Response(_SWAGGER_INIT, media_type="text/javascript")


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")
