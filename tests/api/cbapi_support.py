"""Test helpers for tests/api: a real uvicorn server in a thread, an SSE reader, and FakeEngine, a TEST
DOUBLE of circuitboard.engine.session.Engine used only where a controllable engine is needed (slow jobs
for cancel / queue-full / read-during-job tests)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import torch
import uvicorn

from circuitboard.api.app import create_app
from circuitboard.config import Settings
from circuitboard.engine.types import (
    AttributionCancelled,
    AttributionParams,
    EngineInfo,
    InterventionRequest,
    InterventionResult,
    Outcome,
    ProgressEvent,
    TargetToken,
    TokenInfo,
    TokenizeResult,
    TokenProb,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A real uvicorn server on a free port, in a thread of the test process."""

    def __init__(self, settings: Settings, engine_factory: Callable[[], Any] | None = None) -> None:
        self.settings = settings
        self.app = create_app(settings, engine_factory=engine_factory)
        self.port = free_port()
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=1,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive(), "server did not stop"

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 30), **kw)

    def wait_engine(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        with self.client() as c:
            while True:
                state = c.get("/api/health").json()["engine"]
                if state != "loading" or time.monotonic() > deadline:
                    return state
                time.sleep(0.05)


@contextmanager
def live_server(settings: Settings, engine_factory: Callable[[], Any] | None = None) -> Iterator[LiveServer]:
    server = LiveServer(settings, engine_factory).start()
    try:
        yield server
    finally:
        server.stop()


def make_settings(tmp: Path, **kw: Any) -> Settings:
    defaults: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp / 'cb.sqlite'}",
        "data_dir": tmp,
        "models_dir": tmp / "models",  # hermetic: never the repo's real presets, atlases or weights
        "frontend_dist": tmp / "no-frontend",
    }
    return Settings(**{**defaults, **kw})


def sse_events(
    client: httpx.Client, path: str, timeout: float = 60, first: threading.Event | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Read a server-sent event stream to its end: [(event name, data)]. `first` is set on the first event."""
    out: list[tuple[str, dict[str, Any]]] = []
    name = "message"
    with client.stream("GET", path, timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                out.append((name, json.loads(line.split(":", 1)[1])))
                if first is not None:
                    first.set()
    return out


class SSEReader(threading.Thread):
    """Reads an event stream in the background; `opened` is set once the first event arrived."""

    def __init__(self, server: LiveServer, path: str) -> None:
        super().__init__(daemon=True)
        self.server, self.path = server, path
        self.opened = threading.Event()
        self.events: list[tuple[str, dict[str, Any]]] = []

    def run(self) -> None:
        with self.server.client() as c:
            self.events = sse_events(c, self.path, first=self.opened)

    def __enter__(self) -> SSEReader:
        self.start()
        assert self.opened.wait(10), "the event stream did not open"
        return self

    def __exit__(self, *exc: object) -> None:
        self.join(30)


def wait_job(client: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(0.02)


# ------------------------------------------------------------------------------------------- test double
class FakeEngine:
    """TEST DOUBLE of Engine (docs/architecture.md contract). Whitespace tokenizer; a small valid graph in
    circuit-tracer's schema. `gate`: when set up, attribute() waits on it (polling should_cancel), so
    tests can hold a job in the `running` state."""

    N_LAYERS = 2

    def __init__(self, hold: bool = False) -> None:
        self.gate = threading.Event()
        if not hold:
            self.gate.set()
        self.started = threading.Event()
        self.calls = 0
        self.info = EngineInfo(
            model_name="fake-model",
            transcoder_name="fake-transcoders",
            architecture="llama",
            n_layers=self.N_LAYERS,
            d_model=8,
            d_transcoder=16,
            vocab_size=1000,
            cross_layer=False,
            device="cpu",
            dtype="float32",
        )

    @staticmethod
    def _word_id(word: str) -> int:
        return 10 + sum(map(ord, word)) % 900

    def encode(self, prompt: str) -> torch.Tensor:
        return torch.tensor([1] + [self._word_id(w) for w in prompt.split()])

    def decode_token(self, token_id: int) -> str:
        return "<bos>" if token_id == 1 else f"w{token_id}"

    def single_token(self, text: str, field: str) -> int:
        if len(text.split()) != 1:
            raise ValueError(f"{field}: {text!r} is {len(text.split())} tokens; a target must be exactly one token")
        return self._word_id(text)

    def target_token(self, text: str, probs: torch.Tensor | None = None) -> TargetToken:
        ids = [self._word_id(w) for w in text.split()]
        single = len(ids) == 1
        return TargetToken(text=text, ids=ids, single=single, prob=0.25 if single and probs is not None else None)

    def tokenize(self, prompt: str, top_k: int = 10, targets: Sequence[str] = ()) -> TokenizeResult:
        tokens = [TokenInfo(id=t, text=self.decode_token(t)) for t in self.encode(prompt).tolist()]
        top = [TokenProb(id=500 + i, text=f"t{i}", prob=0.5 / (i + 1)) for i in range(top_k)]
        ran = torch.ones(1)  # stands for the next-token distribution the real engine computes
        return TokenizeResult(tokens=tokens, top_next=top, targets=[self.target_token(t, ran) for t in targets])

    def attribute(
        self,
        prompt: str,
        params: AttributionParams,
        progress: Callable[[ProgressEvent], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        assert isinstance(params, AttributionParams)
        self.calls += 1
        self.started.set()
        progress = progress or (lambda e: None)
        should_cancel = should_cancel or (lambda: False)
        progress(ProgressEvent(phase="forward", done=1, total=1))
        while not self.gate.wait(0.02):
            if should_cancel():
                raise AttributionCancelled()
        for i in range(4):
            if should_cancel():
                raise AttributionCancelled()
            progress(ProgressEvent(phase="features", done=i + 1, total=4))
        progress(ProgressEvent(phase="prune", done=1, total=1))
        progress(ProgressEvent(phase="export", done=1, total=1))
        return self.graph(prompt, params)

    def graph(self, prompt: str, params: AttributionParams) -> dict[str, Any]:
        toks = self.tokenize(prompt, 0).tokens
        last = len(toks) - 1
        logit_layer = self.N_LAYERS + 1
        nodes = [_node(f"E_{t.id}_{p}", t.id, "E", p, "embedding") for p, t in enumerate(toks)] + [
            _node(f"0_3_{last}", 3, "0", last, "cross layer transcoder", activation=1.5),
            _node(f"1_-1_{last}", -1, "1", last, "mlp reconstruction error"),
            _node(
                f"{logit_layer}_500_{last}", 500, str(logit_layer), last, "logit", token_prob=0.5, is_target_logit=True
            ),
        ]
        links = [
            {"source": f"E_{toks[-1].id}_{last}", "target": f"0_3_{last}", "weight": 0.7},
            {"source": f"0_3_{last}", "target": f"{logit_layer}_500_{last}", "weight": 1.25},
            {"source": f"1_-1_{last}", "target": f"{logit_layer}_500_{last}", "weight": -0.1},
        ]
        return {
            "metadata": {
                "slug": params.slug or "fake",
                "scan": "fake-model",
                "prompt_tokens": [t.text for t in toks],
                "prompt": prompt,
                "node_threshold": params.node_threshold,
                "schema_version": 1,
                "info": {"model": "fake-model", "transcoders": "fake-transcoders", "parameters": params.model_dump()},
            },
            "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
            "nodes": nodes,
            "links": links,
        }

    def intervene(self, req: InterventionRequest) -> InterventionResult:
        watch = [TokenProb(id=self.single_token(t, f"watch.{i}"), text=t, prob=0.01) for i, t in enumerate(req.watch)]
        before = Outcome(top=[TokenProb(id=500, text="t0", prob=0.5)], watch=watch, continuation=" a b")
        scale = 0.1 if req.interventions else 0.5
        after = Outcome(top=[TokenProb(id=500, text="t0", prob=scale)], watch=watch, continuation=" c d")
        return InterventionResult(before=before, after=after)


def _node(node_id: str, feature: int, layer: str, ctx: int, ftype: str, **kw: Any) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "feature": feature,
        "layer": layer,
        "ctx_idx": ctx,
        "feature_type": ftype,
        "token_prob": kw.get("token_prob", 0.0),
        "is_target_logit": kw.get("is_target_logit", False),
        "run_idx": 0,
        "reverse_ctx_idx": 0,
        "jsNodeId": node_id,
        "clerp": "",
        "influence": 0.5,
        "activation": kw.get("activation"),
    }
