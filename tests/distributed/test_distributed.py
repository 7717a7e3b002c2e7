"""Distributed mode end to end: real worker processes on two tiny presets, two real API replicas, one Redis, one
database. The tests run in order on one cluster (module scope): later ones stop and kill workers."""

from __future__ import annotations

import json
import threading
import time

import pytest
from cluster import wait_job

from circuitboard.config import RateLimits
from circuitboard.store import Store

pytestmark = pytest.mark.distributed

SLOW = "The capital of Texas is Austin, and it runs slowly"  # slow_worker.py sleeps on each progress event


@pytest.fixture(scope="module")
def lab(cluster):
    """Workers: two of tiny-a (slow_worker.py), one of tiny-b (the `circuitboard worker` CLI). Replicas: one per
    preset (each preset is its replica's default), batch size 8 so that a trace has many progress events."""
    a1, a2 = cluster.worker("tiny-a"), cluster.worker("tiny-a")
    b1 = cluster.worker("tiny-b", slow=False)
    roomy = RateLimits(traces="1000/minute", interventions="1000/minute")  # one address makes every call here
    api_a = cluster.api("tiny-a", batch_size=8, rate_limits=roomy)
    api_b = cluster.api("tiny-b", batch_size=8, rate_limits=roomy)
    cluster.wait_workers("tiny-a", 2), cluster.wait_workers("tiny-b", 1)
    return {"a1": a1, "a2": a2, "b1": b1, "api_a": api_a, "api_b": api_b, "cluster": cluster}


def _submit(c, prompt: str, **body) -> dict:
    r = c.post("/api/graphs", json={"prompt": prompt, "max_feature_nodes": 200, **body})
    assert r.status_code == 202, r.text
    return r.json()


def _graph(c, prompt: str) -> str:
    """The slug of the prompt's graph: stored already (201), or traced now."""
    r = c.post("/api/graphs", json={"prompt": prompt, "max_feature_nodes": 200})
    assert r.status_code in (201, 202), r.text
    return r.json()["slug"] if r.status_code == 201 else wait_job(c, r.json()["job_id"])["slug"]


def _sse(c, path: str, out: list, opened: threading.Event) -> None:
    name = "message"
    with c.stream("GET", path, timeout=90) as r:
        for line in r.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                out.append((name, json.loads(line.split(":", 1)[1]), time.monotonic()))
                opened.set()


def test_config_lists_presets_with_live_workers(lab):
    with lab["api_a"].client() as c:
        cfg = c.get("/api/config").json()
    assert cfg["queue"] == "redis" and cfg["engine"] == "ready"
    workers = {p["name"]: p["workers"] for p in cfg["presets"]}
    assert workers == {"tiny-a": 2, "tiny-b": 1}
    assert {p["name"]: p["model"]["model_name"] for p in cfg["presets"]} == {"tiny-a": "tiny-a", "tiny-b": "tiny-b"}
    assert cfg["model"]["model_name"] == "tiny-a"  # the replica's own preset


def test_two_presets_run_their_own_jobs_and_dedup(lab):
    with lab["api_a"].client() as ca, lab["api_b"].client() as cb:
        ja, jb = _submit(ca, "The capital of Texas is"), _submit(cb, "The capital of Texas is")
        done_a, done_b = wait_job(ca, ja["job_id"]), wait_job(cb, jb["job_id"])
        assert done_a["status"] == done_b["status"] == "done", (done_a, done_b)
        graph_a = ca.get(f"/api/graphs/{done_a['slug']}").json()
        graph_b = cb.get(f"/api/graphs/{done_b['slug']}").json()
        assert graph_a["metadata"]["info"]["model"] == "tiny-a" and graph_b["metadata"]["info"]["model"] == "tiny-b"
        # identical requests: the stored graph, from either replica of the same preset's model
        again = cb.post("/api/graphs", json={"prompt": "The capital of Texas is", "max_feature_nodes": 200})
        assert again.status_code == 201 and again.json()["slug"] == done_b["slug"]
        # ... and while one runs, the job under way
        first = _submit(ca, SLOW + " (dedup)")
        same = _submit(ca, SLOW + " (dedup)")
        assert same["job_id"] == first["job_id"]
        assert wait_job(ca, first["job_id"])["status"] == "done"


def test_a_request_names_the_preset_that_traces_it(lab):
    with lab["api_a"].client() as ca:
        job = _submit(ca, "Paris is the capital of", preset="tiny-b")
        done = wait_job(ca, job["job_id"])
        assert done["status"] == "done", done
        assert ca.get(f"/api/graphs/{done['slug']}").json()["metadata"]["info"]["model"] == "tiny-b"
        r = ca.post("/api/graphs", json={"prompt": "Paris is the capital of", "preset": "tiny-c"})
        assert r.status_code == 503 and "'tiny-c'" in r.json()["detail"], r.text
        bad = ca.post("/api/graphs", json={"prompt": "Paris", "preset": "../etc"})
        assert bad.status_code == 422 and "preset" in bad.text, bad.text


def test_progress_from_a_worker_to_another_replica(lab):
    with lab["api_a"].client() as ca, lab["api_b"].client() as cb:
        job = _submit(ca, SLOW + " (progress)")
        events: list = []
        opened = threading.Event()
        reader = threading.Thread(target=_sse, args=(cb, job["events_url"], events, opened), daemon=True)
        reader.start()
        assert opened.wait(10)
        running = wait_job(cb, job["job_id"], until=("running",))
        time.sleep(0.5)
        live = cb.get(f"/api/jobs/{job['job_id']}").json()  # replica B reads the live progress from Redis
        assert live["status"] == "running" and live["phase"] is not None and live["fraction"] > 0, (running, live)
        reader.join(90)
    names = [e[0] for e in events]
    assert names[-1] == "done" and names.count("progress") >= 5, names
    phases = [e[1]["phase"] for e in events if e[0] == "progress"]
    assert "features" in phases and "export" in phases
    fractions = [e[1]["fraction"] for e in events if e[0] == "progress"]
    assert fractions == sorted(fractions)


def test_cancel_reaches_the_worker(lab):
    cluster = lab["cluster"]
    with lab["api_a"].client() as ca, lab["api_b"].client() as cb:
        job = _submit(ca, SLOW + " (cancel)")
        assert wait_job(cb, job["job_id"], until=("running",))["status"] == "running"
        live_key = f"cb:live:{job['job_id']}"
        deadline = time.monotonic() + 10
        while not cluster.redis.exists(live_key) and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        r = cb.delete(f"/api/jobs/{job['job_id']}")  # on the other replica
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        while cluster.redis.exists(live_key) and time.monotonic() - t0 < 5:
            time.sleep(0.02)
        stopped = time.monotonic() - t0
        assert stopped < 1.5, f"the worker stopped {stopped:.2f} s after the cancel"
        assert ca.get(f"/api/jobs/{job['job_id']}").json()["status"] == "cancelled"


def test_validate_and_interventions_over_the_queue(lab):
    with lab["api_a"].client() as ca, lab["api_b"].client() as cb:
        slug = _graph(ca, "The capital of Texas is")
        graph = ca.get(f"/api/graphs/{slug}").json()
        feats = [n["node_id"] for n in graph["nodes"] if n["feature_type"] == "cross layer transcoder"]
        body = {"supernodes": [["first", *feats[:2]], ["second", *feats[2:4]]], "modes": ["frozen"]}
        # replica B's own preset is tiny-b: the graph's model sends the job to tiny-a's workers
        r = cb.post(f"/api/graphs/{slug}/validate", json=body)
        assert r.status_code == 202, r.text
        job = wait_job(cb, r.json()["job"]["id"])
        assert job["status"] == "done" and job["kind"] == "validate", job
        result = cb.get(job["result_url"]).json()
        assert [g["label"] for g in result["groups"]] == ["first", "second"]
        bad = cb.post(f"/api/graphs/{slug}/validate", json={"supernodes": [["x", "E_1_0"]]})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "supernodes", 0, 1]

        layer, index, pos = (int(x) for x in feats[0].split("_"))
        iv = {
            "prompt": "The capital of Texas is",
            "interventions": [{"layer": layer, "feature": index, "position": pos, "mode": "zero", "value": 0}],
            "n_tokens": 2,
        }
        out = ca.post("/api/interventions", json=iv)
        assert out.status_code == 200, out.text
        assert out.json()["before"]["top"] and out.json()["after"]["top"]
        tok = ca.post("/api/tokenize", json={"prompt": "The capital of Texas is", "top_k": 3})
        assert tok.status_code == 200 and len(tok.json()["top_next"]) == 3
        long = ca.post("/api/interventions", json={**iv, "prompt": "word " * 100})
        assert long.status_code == 422 and long.json()["detail"][0]["loc"] == ["body", "prompt"]


def test_killed_worker_job_is_redelivered(lab):
    cluster = lab["cluster"]
    store = Store(cluster.db_url)
    try:
        with lab["api_a"].client() as ca:
            job = _submit(ca, SLOW + " (kill -9)")
            assert wait_job(ca, job["job_id"], until=("running",))["status"] == "running"
            first = store.jobs.get(job["job_id"])
            victim = next(p for p in (lab["a1"], lab["a2"]) if f"-{p.pid}-" in (first.worker or ""))
            victim.kill9()
            done = wait_job(ca, job["job_id"], timeout=120)
            assert done["status"] == "done", done
            rec = store.jobs.get(job["job_id"])
            assert rec.attempts == 2 and rec.worker != first.worker
            lab["survivor"] = next(p for p in (lab["a1"], lab["a2"]) if p is not victim)
    finally:
        store.close()


def test_redis_restart_loses_no_accepted_job(lab, module_redis):
    with lab["api_a"].client() as ca:
        running = _submit(ca, SLOW + " (restart)")
        queued = _submit(ca, "A queued job behind it")
        assert wait_job(ca, running["job_id"], until=("running",))["status"] == "running"
        module_redis.stop()  # append-only file: what was acknowledged is on disk
        module_redis.start()
        assert wait_job(ca, running["job_id"], timeout=120)["status"] == "done"
        assert wait_job(ca, queued["job_id"], timeout=60)["status"] == "done"

        # Redis empty (its data lost): the idle worker sends the jobs still queued in the database again.
        running = _submit(ca, SLOW + " (flushed)")
        queued = _submit(ca, "Another queued job behind it")
        assert wait_job(ca, running["job_id"], until=("running",))["status"] == "running"
        module_redis.flush()
        assert wait_job(ca, running["job_id"], timeout=120)["status"] == "done"
        assert wait_job(ca, queued["job_id"], timeout=60)["status"] == "done"


def test_replicas_share_rate_limits(lab):
    """The rate-limit counters live in Redis: calls to two replicas count against one rate."""
    cluster = lab["cluster"]
    rates = RateLimits(traces="3/minute", per_ip_factor=1)
    c_api, d_api = cluster.api("tiny-a", rate_limits=rates), cluster.api("tiny-a", rate_limits=rates)
    with c_api.client() as c, d_api.client() as d:
        codes = [c.post("/api/graphs", json={"prompt": f"rate {i}"}).status_code for i in range(2)]
        codes.append(d.post("/api/graphs", json={"prompt": "rate 2"}).status_code)
        assert all(code in (201, 202) for code in codes), codes
        r = d.post("/api/graphs", json={"prompt": "rate 3"})
        assert r.status_code == 429 and r.headers["retry-after"], r.text


def test_stopped_worker_hands_its_job_back(lab):
    """SIGTERM mid-job: the job goes back to the queue (its attempt not counted) for the next worker."""
    store = Store(lab["cluster"].db_url)
    try:
        with lab["api_a"].client() as ca:
            job = _submit(ca, SLOW + " (handed back)")
            assert wait_job(ca, job["job_id"], until=("running",))["status"] == "running"
            before = store.jobs.get(job["job_id"])
            lab["survivor"].stop()
            after = store.jobs.get(job["job_id"])
            assert after.status == "queued" and after.attempts == before.attempts - 1, (before, after)
            view = ca.get(f"/api/jobs/{job['job_id']}").json()
            assert view["status"] == "queued" and view["position"] == 1
    finally:
        store.close()


def test_preset_without_live_worker_is_503(lab):
    lab["b1"].stop()  # SIGTERM: the worker leaves the registry at once
    with lab["api_b"].client() as cb:
        r = cb.post("/api/graphs", json={"prompt": "Nobody serves this"})
        assert r.status_code == 503 and "'tiny-b'" in r.json()["detail"], r.text
        assert cb.get("/api/config").json()["presets"] == []  # tiny-a's last worker stopped in the test before
