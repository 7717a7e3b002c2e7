"""Persistence across restarts, and jobs a dead process left `running`."""

from __future__ import annotations

from cbapi_support import FakeEngine, live_server, make_settings, wait_job
from sqlalchemy import update

from circuitboard.store import Store
from circuitboard.store.models import JobRow


def test_everything_survives_a_restart(tmp_path):
    settings = make_settings(tmp_path)
    engine = FakeEngine()
    with live_server(settings, lambda: engine) as server, server.client() as c:
        job = c.post("/api/graphs", json={"prompt": "persist me please"}).json()
        slug = wait_job(c, job["job_id"])["slug"]
        graph = c.get(f"/api/graphs/{slug}").json()
        sid = c.post(f"/api/graphs/{slug}/subgraphs", json={"pinnedIds": [graph["nodes"][0]["node_id"]]}).json()["id"]

    # a fresh server process on the same database
    engine2 = FakeEngine()
    with live_server(settings, lambda: engine2) as server, server.client() as c:
        assert c.get(f"/api/graphs/{slug}").json() == graph
        assert c.get(f"/api/graphs/{slug}/subgraphs/{sid}").json()["pinnedIds"] == [graph["nodes"][0]["node_id"]]
        assert c.get(f"/api/jobs/{job['job_id']}").json()["status"] == "done"
        assert c.get("/api/graphs").json()["total"] == 1
        r = c.post("/api/graphs", json={"prompt": "persist me please"})
        assert r.status_code == 201 and r.json()["slug"] == slug  # the cache survived too
        assert engine2.calls == 0


def test_interrupted_jobs_are_requeued_or_failed(tmp_path):
    settings = make_settings(tmp_path)
    store = Store(settings.resolved_database_url)
    req = {
        "prompt": "left running",
        "max_n_logits": 10,
        "desired_logit_prob": 0.95,
        "max_feature_nodes": 100,
        "node_threshold": 0.8,
        "edge_threshold": 0.98,
        "batch_size": 8,
    }
    store.jobs.create("crashed-once", "left running", req, None)
    store.jobs.create("crashed-twice", "left running too", {**req, "prompt": "left running too"}, None)
    store.jobs.create("never-started", "still queued", {**req, "prompt": "still queued"}, None)
    # simulate a process killed mid-job: claimed (running, attempts=1), then a second crash on the other
    assert store.jobs.claim_next().id == "crashed-once"
    assert store.jobs.claim_next().id == "crashed-twice"
    with store.db.session() as s:
        s.execute(update(JobRow).where(JobRow.id == "crashed-twice").values(attempts=2))
    store.close()

    engine = FakeEngine()
    with live_server(settings, lambda: engine) as server, server.client() as c:
        assert wait_job(c, "crashed-once")["status"] == "done"
        failed = c.get("/api/jobs/crashed-twice").json()
        assert failed["status"] == "failed" and "restart" in failed["error"]
        assert wait_job(c, "never-started")["status"] == "done"
    assert engine.calls == 2


def test_clean_shutdown_requeues_the_running_job(tmp_path):
    settings = make_settings(tmp_path)
    held = FakeEngine(hold=True)
    with live_server(settings, lambda: held) as server, server.client() as c:
        job = c.post("/api/graphs", json={"prompt": "interrupted by shutdown"}).json()
        assert held.started.wait(5)
    engine = FakeEngine()
    with live_server(settings, lambda: engine) as server, server.client() as c:
        done = wait_job(c, job["job_id"])
        assert done["status"] == "done", done
