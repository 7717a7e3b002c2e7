"""The queue: progress, cancel, a full queue, reads while a job runs, identical requests."""

from __future__ import annotations

import time

from cbapi_support import SSEReader, sse_events, wait_job


def _submit(c, prompt: str) -> dict:
    r = c.post("/api/graphs", json={"prompt": prompt})
    assert r.status_code == 202, r.text
    return r.json()


def test_read_during_running_job_is_fast(held_server, held_engine):
    with held_server.client() as c:
        first = _submit(c, "a stored graph")
        held_engine.gate.set()
        slug = wait_job(c, first["job_id"])["slug"]
        held_engine.gate.clear()
        held_engine.started.clear()
        running = _submit(c, "a long running job")
        assert held_engine.started.wait(5)
        assert c.get(f"/api/jobs/{running['job_id']}").json()["status"] == "running"
        for path in (f"/api/graphs/{slug}", "/api/graphs", "/api/health", f"/api/jobs/{running['job_id']}"):
            t0 = time.perf_counter()
            r = c.get(path)
            assert r.status_code == 200
            assert time.perf_counter() - t0 < 1.0, path
        held_engine.gate.set()
        assert wait_job(c, running["job_id"])["status"] == "done"


def test_queue_positions_and_full_queue(held_server, held_engine):
    with held_server.client() as c:
        a = _submit(c, "job one")
        assert held_engine.started.wait(5)
        b = _submit(c, "job two")
        d = _submit(c, "job three")
        assert b["position"] == 1 and d["position"] == 2
        assert c.get(f"/api/jobs/{a['job_id']}").json()["position"] == 0
        r = c.post("/api/graphs", json={"prompt": "job four"})
        assert r.status_code == 429
        assert "queue" in r.json()["detail"] and "full" in r.json()["detail"]
        assert r.headers["retry-after"]
        # an identical request joins the job already under way instead of taking a queue slot
        same = c.post("/api/graphs", json={"prompt": "job two"})
        assert same.status_code == 202 and same.json()["job_id"] == b["job_id"]
        # cancelling a queued job frees its slot and moves the next one up
        assert c.delete(f"/api/jobs/{b['job_id']}").json() == {
            "id": b["job_id"],
            "status": "cancelled",
            "position": None,
            "phase": None,
            "done": 0,
            "total": 0,
            "slug": None,
            "error": None,
        }
        assert c.get(f"/api/jobs/{d['job_id']}").json()["position"] == 1
        assert c.post("/api/graphs", json={"prompt": "job four"}).status_code == 202
        held_engine.gate.set()
        assert wait_job(c, d["job_id"])["status"] == "done"
        assert wait_job(c, b["job_id"])["status"] == "cancelled"


def test_cancel_running_job_streams_cancelled(held_server, held_engine):
    with held_server.client() as c:
        job = _submit(c, "cancel me while running")
        assert held_engine.started.wait(5)
        with SSEReader(held_server, job["events_url"]) as reader:
            r = c.delete(f"/api/jobs/{job['job_id']}")
            assert r.status_code == 200 and r.json()["status"] == "cancelled"
        events = reader.events
        assert events and events[-1][0] == "cancelled"
        assert events[0][0] == "progress"  # it was running when the stream opened
        # the engine stopped (should_cancel) and the worker takes the next job
        held_engine.gate.set()
        nxt = _submit(c, "after the cancelled one")
        assert wait_job(c, nxt["job_id"])["status"] == "done"
        assert wait_job(c, job["job_id"])["status"] == "cancelled"
        again = c.delete(f"/api/jobs/{job['job_id']}")
        assert again.status_code == 409 and "job" in again.json()["detail"]
        assert c.get("/api/jobs/nope").status_code == 404
        assert c.delete("/api/jobs/nope").status_code == 404
        assert c.get("/api/jobs/nope/events").status_code == 404


def test_engine_error_fails_job_with_message(fake_server, fake_engine):
    def boom(*a, **k):
        raise ValueError("target_tokens: 'zzz' is not a single token")

    fake_engine.attribute = boom
    with fake_server.client() as c:
        job = _submit(c, "this one fails")
        events = sse_events(c, job["events_url"])
        assert events[-1][0] == "failed"
        assert events[-1][1]["error"] == "target_tokens: 'zzz' is not a single token"


def test_unstorable_graph_fails_job_and_worker_goes_on(fake_server, fake_engine):
    real = fake_engine.attribute

    def nan_graph(prompt, params, progress=None, should_cancel=None):
        g = real(prompt, params, progress, should_cancel)
        g["links"][0]["weight"] = float("nan")
        return g

    fake_engine.attribute = nan_graph
    with fake_server.client() as c:
        bad = wait_job(c, _submit(c, "nan weights")["job_id"])
        assert bad["status"] == "failed" and "internal error" in bad["error"]
        fake_engine.attribute = real
        assert wait_job(c, _submit(c, "fine again")["job_id"])["status"] == "done"


def test_graph_jobs_say_their_kind_and_have_no_result_url(fake_server):
    with fake_server.client() as c:
        job = _submit(c, "a graph job")
        queued = c.get(f"/api/jobs/{job['job_id']}").json()
        assert queued["kind"] == "graph" and queued["result_url"] is None
        done = wait_job(c, job["job_id"])
        assert done["status"] == "done" and done["kind"] == "graph" and done["result_url"] is None
        # a graph job's result is its graph: /result says where it is instead
        r = c.get(f"/api/jobs/{job['job_id']}/result")
        assert r.status_code == 409 and f"/api/graphs/{done['slug']}" in r.json()["detail"]
        cfg = c.get("/api/config").json()
        assert cfg["queue"] == "local"
        assert [(p["name"], p["workers"], p["model"]["model_name"]) for p in cfg["presets"]] == [
            (fake_server.settings.preset, 1, "fake-model")
        ]


def test_a_preset_this_server_does_not_run_is_503(fake_server):
    with fake_server.client() as c:
        own = fake_server.settings.preset
        r = c.post("/api/graphs", json={"prompt": "another model's graph", "preset": "not-here"})
        assert r.status_code == 503 and "'not-here'" in r.json()["detail"], r.text
        ok = c.post("/api/graphs", json={"prompt": "this server's own preset", "preset": own})
        assert ok.status_code in (201, 202), ok.text
