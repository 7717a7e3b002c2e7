"""Playwright (pytest-playwright) against Debian's chromium; servers for the page tests.

- ``fake_server``: tests/browser/fake_api.py (documented routes, fixture graphs) — always available.
- ``real_server``: circuitboard.api.app.create_app under uvicorn with a tiny random model
  (circuitboard.devtools.tiny); skipped when the backend is not importable yet.
The page itself must be built first: ``npm --prefix frontend ci && npm --prefix frontend run build``.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DIST = ROOT / "frontend" / "dist"
ARTIFACTS = ROOT / "test-artifacts"
sys.path.insert(0, str(HERE))

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

_tmp = tempfile.mkdtemp(prefix="cb-chromium-")
os.environ.setdefault("XDG_CONFIG_HOME", os.path.join(_tmp, "config"))
os.environ.setdefault("XDG_CACHE_HOME", os.path.join(_tmp, "cache"))


def chromium_path() -> str:
    explicit = os.environ.get("CHROMIUM_PATH")
    if explicit:
        return explicit
    # The binary behind Debian's /usr/bin/chromium wrapper starts faster.
    for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium"):
        if os.path.exists(p):
            return p
    return "/usr/bin/chromium"


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not os.path.exists(chromium_path()):
        pytest.skip("chromium missing: run scripts/install-chromium.sh")
    return {**browser_type_launch_args, "executable_path": chromium_path(), "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1440, "height": 1000}}


@pytest.fixture(scope="session", autouse=True)
def _built_page():
    if not (DIST / "app.js").exists() or not (DIST / "index.html").exists():
        pytest.skip("frontend/dist is missing: npm --prefix frontend ci && npm --prefix frontend run build")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn in a daemon thread on a free port."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def fake_server():
    from fake_api import create_fake_app
    from fixtures import make_graph
    from fixtures_small import make_scores_graph

    graphs = {
        "scores-fixture": make_scores_graph(),
        "dallas-austin-fixture": make_graph(),
        "xss-fixture": make_graph(
            slug="xss-fixture",
            prompt_tokens=["<bos>", "<img src=x onerror=alert(1)>", " is"],
            n_layers=3,
            n_features=12,
            n_links=60,
            seed=3,
        ),
    }
    with ServerThread(create_fake_app(graphs)) as srv:
        yield srv.url


COUPLET = "He saw a carrot and had to grab it,\nHis hunger was like a starving"


@pytest.fixture(scope="session")
def reading_server():
    """Graphs the size of real traces (issue 12: the first view, long prompts), on their own fake API."""
    from fake_api import create_fake_app
    from fixtures import DEFAULT_TOKENS, make_research_graph, tokenize

    long_tokens = tokenize(
        "In the quiet town by the river, the old baker woke before dawn, lit the oven, and slowly began to knead"
        " the soft dough for the warm morning bread of"
    )
    limit_tokens = ["<bos>", *[f" w{i}" for i in range(1, 64)]]
    graphs = {
        "dallas-research": make_research_graph("dallas-research", DEFAULT_TOKENS, seed=5),
        "long-31": make_research_graph("long-31", long_tokens, seed=6),
        "limit-64": make_research_graph("limit-64", limit_tokens, n_features=900, n_links=60_000, seed=7),
    }
    assert len(long_tokens) == 31, len(long_tokens)
    with ServerThread(create_fake_app(graphs)) as srv:
        yield srv.url


@pytest.fixture
def empty_server():
    """A fake API with no graph yet (a first visit); jobs send no `fraction` (the page weighs the phases)."""
    from fake_api import create_fake_app

    with ServerThread(create_fake_app({}, job_seconds=2.0, job_fraction=False)) as srv:
        yield srv.url


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def real_server(tmp_path_factory):
    """The real API (create_app) with a tiny random llama checkpoint on the CPU, serving frontend/dist."""
    try:
        import torch

        from circuitboard.api.app import create_app
        from circuitboard.config import Settings
        from circuitboard.devtools.tiny import build_tiny_checkpoint
    except ImportError as e:  # the service or the engine is not there yet
        pytest.skip(f"real server unavailable: {e}")
    torch.set_num_threads(1)  # two shared cores
    tmp = tmp_path_factory.mktemp("cb-real")
    model_dir, tc_dir = build_tiny_checkpoint(tmp / "tiny", "llama", seed=0)
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'cb.sqlite'}",
        data_dir=tmp,
        frontend_dist=DIST,
        model_path=str(model_dir),
        transcoders_path=str(tc_dir),
        device="cpu",
    )
    with ServerThread(create_app(settings)) as srv:
        import httpx

        deadline = time.time() + 120
        while True:
            state = httpx.get(f"{srv.url}/api/health", timeout=10).json().get("engine")
            if state != "loading" or time.time() > deadline:
                break
            time.sleep(0.2)
        if state != "ready":
            pytest.fail(f"tiny engine did not load: {state}")
        yield srv.url
