from __future__ import annotations

from cbapi_support import SSEReader

import circuitboard


def test_health_and_config(fake_server):
    with fake_server.client() as c:
        h = c.get("/api/health").json()
        assert h == {"status": "ok", "version": circuitboard.__version__, "device": "cpu", "engine": "ready"}
        cfg = c.get("/api/config").json()
        assert cfg["model"]["model_name"] == "fake-model"
        assert cfg["transcoders"] == "fake-transcoders"
        assert cfg["limits"]["max_prompt_tokens"] == 256
        assert cfg["limits"]["max_queue"] == 8
        assert cfg["params"]["max_n_logits"] == {"min": 1, "max": 20, "default": 10}


def test_trace_events_graph_and_cache(held_server, held_engine):
    fake_engine = held_engine
    with held_server.client() as c:
        r = c.post("/api/graphs", json={"prompt": "Dallas is in the state of"})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["position"] in (0, 1)
        assert job["events_url"] == f"/api/jobs/{job['job_id']}/events"
        with SSEReader(held_server, job["events_url"]) as reader:
            held_engine.gate.set()  # the stream is open: now let the job move on
        events = reader.events
        names = [n for n, _ in events]
        assert names[-1] == "done", events
        progress = [d for n, d in events if n == "progress"]
        assert [p["phase"] for p in progress][-3:] == ["features", "prune", "export"]
        assert {"phase": "features", "done": 4, "total": 4} in [
            {k: p[k] for k in ("phase", "done", "total")} for p in progress
        ]
        assert all(d["id"] == job["job_id"] for _, d in events)
        slug = events[-1][1]["slug"]
        assert slug.startswith("dallas-is-in-the-")
        g = c.get(f"/api/graphs/{slug}")
        assert g.status_code == 200
        graph = g.json()
        assert set(graph) >= {"metadata", "qParams", "nodes", "links"}
        assert graph["metadata"]["slug"] == slug
        # the same request again is a cache hit
        r2 = c.post("/api/graphs", json={"prompt": "Dallas is in the state of"})
        assert r2.status_code == 201
        assert r2.json() == {"slug": slug, "cached": True, "graph_url": f"/api/graphs/{slug}"}
        assert fake_engine.calls == 1
