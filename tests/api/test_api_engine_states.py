"""The API while the engine loads, after it failed, without one, and while it is busy; pages and docs."""

from __future__ import annotations

import threading
import time

from cbapi_support import FakeEngine, live_server, make_settings, wait_job


def test_loading_then_ready_runs_jobs_queued_meanwhile(tmp_path):
    release = threading.Event()
    engine = FakeEngine()

    def slow_factory():
        release.wait(10)
        return engine

    with live_server(make_settings(tmp_path), slow_factory) as server, server.client() as c:
        assert c.get("/api/health").json()["engine"] == "loading"
        assert c.get("/api/config").json()["model"] is None
        tok = c.post("/api/tokenize", json={"prompt": "hi"})
        assert tok.status_code == 503 and "loading" in tok.json()["detail"] and tok.headers["retry-after"]
        # graph requests are queued while the model loads and checked by the worker once it is up
        ok = c.post("/api/graphs", json={"prompt": "queued while loading"})
        long = c.post("/api/graphs", json={"prompt": " ".join(["w"] * 300)})  # past max_prompt_tokens (256)
        assert ok.status_code == 202 and long.status_code == 202
        assert c.get("/api/graphs").status_code == 200  # browsing works meanwhile
        release.set()
        assert server.wait_engine() == "ready"
        assert wait_job(c, ok.json()["job_id"])["status"] == "done"
        failed = wait_job(c, long.json()["job_id"])
        assert failed["status"] == "failed" and failed["error"].startswith("prompt: 301 tokens")


def test_failed_engine(tmp_path):
    def broken():
        raise FileNotFoundError("no config.json in /nowhere")

    with live_server(make_settings(tmp_path), broken) as server, server.client() as c:
        assert server.wait_engine() == "failed"
        cfg = c.get("/api/config").json()
        assert cfg["engine"] == "failed" and "config.json" in cfg["engine_error"]
        r = c.post("/api/graphs", json={"prompt": "anything"})
        assert r.status_code == 503 and "failed to load" in r.json()["detail"]
        assert c.get("/api/graphs").status_code == 200


def test_no_engine_pages_docs_and_features(tmp_path):
    settings = make_settings(tmp_path, load_engine=False)
    with live_server(settings) as server, server.client() as c:
        assert c.get("/api/health").json()["engine"] == "none"
        r = c.post("/api/interventions", json={"prompt": "a"})
        assert r.status_code == 503 and "--no-engine" in r.json()["detail"]
        for page in ("/", "/trace", "/graph/some-slug"):
            p = c.get(page)
            assert p.status_code == 200 and "text/html" in p.headers["content-type"]
        spec = c.get("/openapi.json").json()
        assert "/api/graphs" in spec["paths"] and "/api/features/{layer}/{index}" in spec["paths"]
        assert c.get("/docs").status_code == 200
        feat = c.get("/api/features/0/1")
        assert feat.status_code == 404 and "atlas" in feat.json()["detail"]


def test_frontend_is_served(tmp_path):
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html><script src='/static/app.js'></script>")
    (dist / "app.js").write_text("console.log(1)")
    settings = make_settings(tmp_path, load_engine=False, frontend_dist=dist)
    with live_server(settings) as server, server.client() as c:
        assert "/static/app.js" in c.get("/graph/abc?subgraph=x").text
        assert c.get("/static/app.js").text == "console.log(1)"


def test_busy_engine_preview_and_interventions(tmp_path):
    held = FakeEngine(hold=True)
    settings = make_settings(tmp_path, preview_wait_s=0.1, engine_wait_s=0.2)
    with live_server(settings, lambda: held) as server, server.client() as c:
        free = c.post("/api/tokenize", json={"prompt": "a b", "top_k": 2}).json()
        assert free["busy"] is False and len(free["top_next"]) == 2
        ok = c.post("/api/interventions", json={"prompt": "a b"})
        assert ok.status_code == 200 and set(ok.json()) == {"before", "after"}
        job = c.post("/api/graphs", json={"prompt": "hold the model"}).json()
        assert held.started.wait(5)
        t0 = time.perf_counter()
        busy = c.post("/api/tokenize", json={"prompt": "a b", "top_k": 2}).json()
        assert time.perf_counter() - t0 < 2
        assert busy["busy"] is True and busy["top_next"] == [] and busy["n_tokens"] == 3
        # a graph request during the job is answered at once (tokenizer only, no model)
        t0 = time.perf_counter()
        assert c.post("/api/graphs", json={"prompt": "another one"}).status_code == 202
        assert time.perf_counter() - t0 < 2
        r = c.post("/api/interventions", json={"prompt": "a b"})
        assert r.status_code == 503 and "busy" in r.json()["detail"]
        held.gate.set()
        assert wait_job(c, job["job_id"])["status"] == "done"
