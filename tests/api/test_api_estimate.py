"""POST /api/estimate, and POST /api/graphs refusing what would not fit the server's time or memory limit."""

from __future__ import annotations

import pytest
from cbapi_support import FakeEngine, live_server, make_settings


def _named(r, field: str) -> str:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    detail = r.json()["detail"]
    text = detail if isinstance(detail, str) else " ".join(f"{'.'.join(map(str, d['loc']))} {d['msg']}" for d in detail)
    assert field in text, text
    return text


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    """A server whose limits no trace fits: every estimate is refused."""
    settings = make_settings(tmp_path_factory.mktemp("strict"), max_trace_seconds=1e-6, max_trace_bytes=1)
    engine = FakeEngine()
    with live_server(settings, lambda: engine) as server:
        assert server.wait_engine() == "ready"
        yield server, engine


def test_estimate_of_a_prompt_that_fits(shared_server):
    with shared_server.client() as c:
        short = c.post("/api/estimate", json={"prompt": "a b c"})
        assert short.status_code == 200, short.text
        out = short.json()
        assert out["tokens"] == 4 and out["fits"] is True and out["reason"] is None
        assert out["seconds"] > 0 and out["peak_bytes"] > 0
        settings = shared_server.settings
        assert out["limit"] == {"seconds": settings.max_trace_seconds, "bytes": settings.max_trace_bytes}
        limits = c.get("/api/config").json()["limits"]
        assert (limits["max_trace_seconds"], limits["max_trace_bytes"]) == (
            out["limit"]["seconds"],
            out["limit"]["bytes"],
        )
        long = c.post("/api/estimate", json={"prompt": " ".join(["w"] * 200), "max_feature_nodes": 500}).json()
        assert long["tokens"] == 201 and long["seconds"] > out["seconds"] and long["peak_bytes"] > out["peak_bytes"]
        r = c.post("/api/graphs", json={"prompt": "a b c"})
        assert r.status_code == 202, r.text


def test_a_prompt_past_the_token_limit_does_not_fit(shared_server):
    n = shared_server.settings.max_prompt_tokens
    with shared_server.client() as c:
        out = c.post("/api/estimate", json={"prompt": " ".join(["w"] * n)}).json()
        assert out["tokens"] == n + 1 and out["fits"] is False and out["reason"].startswith("prompt:")
        _named(c.post("/api/graphs", json={"prompt": " ".join(["w"] * n)}), "prompt")


def test_refusal_names_the_prompt(strict_server):
    server, engine = strict_server
    with server.client() as c:
        out = c.post("/api/estimate", json={"prompt": "a b c d"}).json()
        assert out["fits"] is False and out["tokens"] == 5
        assert out["reason"].startswith("prompt: 5 tokens would take ~")
        assert "shorten the prompt or lower max_feature_nodes" in out["reason"]
        r = c.post("/api/graphs", json={"prompt": "a b c d"})
        assert r.status_code == 422
        text = _named(r, "prompt")
        assert "this server allows" in text
        assert engine.calls == 0  # refused before it was queued


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "ok", "max_n_logits": 0}, "max_n_logits"),
        ({"prompt": "ok", "max_feature_nodes": 10**9}, "max_feature_nodes"),
        ({"prompt": "ok", "target_tokens": ["a"] * 11}, "target_tokens"),
        ({"prompt": "ok", "node_treshold": 0.5}, "node_treshold"),
    ],
)
def test_bad_estimate_bodies(shared_server, body, field):
    with shared_server.client() as c:
        _named(c.post("/api/estimate", json=body), field)


def test_estimate_without_an_engine(tmp_path):
    with live_server(make_settings(tmp_path, load_engine=False)) as server:
        with server.client() as c:
            r = c.post("/api/estimate", json={"prompt": "a b"})
            assert r.status_code == 503 and "engine" in r.json()["detail"]
