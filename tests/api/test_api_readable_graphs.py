"""Issue 12, the server side: watched tokens in interventions, target previews, forward-only job progress with an
ETA, named saved views, and graph files that survive an import/export round trip with their own node ids."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cbapi_support import SSEReader, live_server, make_settings, wait_job

from circuitboard.devtools.tiny import build_tiny_checkpoint
from circuitboard.store import Store

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROMPT = "The capital of Texas is"


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory, database_backend):
    model_dir, tc_dir = build_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), arch="llama", seed=0)
    settings = make_settings(
        tmp_path_factory.mktemp("srv"), model_path=str(model_dir), transcoders_path=str(tc_dir), device="cpu"
    )
    with live_server(settings) as server:
        assert server.wait_engine() == "ready"
        yield server


# ------------------------------------------------------------------------------------------- interventions
def test_intervention_watches_tokens_in_the_order_asked(tiny_server):
    body = {
        "prompt": PROMPT,
        "interventions": [{"layer": 0, "feature": 5, "position": None, "mode": "set", "value": 50.0}],
        "n_tokens": 1,
        "top_k": 20,
        "watch": [" the", " Texas", "The"],
    }
    with tiny_server.client() as c:
        r = c.post("/api/interventions", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        for side in ("before", "after"):
            watch = out[side]["watch"]
            assert [w["text"] for w in watch] == [" the", " Texas", "The"]
            assert all(0 <= w["prob"] <= 1 for w in watch)
            top = {t["id"]: t["prob"] for t in out[side]["top"]}
            assert len(top) == 20
            for w in watch:  # the same distribution as `top`
                if w["id"] in top:
                    assert w["prob"] == pytest.approx(top[w["id"]], abs=1e-7)
        assert [w["id"] for w in out["before"]["watch"]] == [w["id"] for w in out["after"]["watch"]]
        assert out["before"]["watch"] != out["after"]["watch"]
        default = c.post("/api/interventions", json={"prompt": PROMPT, "n_tokens": 1}).json()
        assert len(default["before"]["top"]) == 5 and default["before"]["watch"] == []


@pytest.mark.parametrize(
    ("extra", "loc"),
    [
        ({"watch": [" Texas", "Texas is big"]}, ["body", "watch", 1]),
        ({"watch": [""]}, ["body", "watch", 0]),
        ({"watch": [" the"] * 21}, ["body", "watch"]),
        ({"watch": " Texas"}, ["body", "watch"]),
        ({"top_k": 21}, ["body", "top_k"]),
        ({"top_k": 0}, ["body", "top_k"]),
    ],
)
def test_bad_watch_and_top_k(tiny_server, extra, loc):
    with tiny_server.client() as c:
        r = c.post("/api/interventions", json={"prompt": PROMPT, "n_tokens": 1, **extra})
        assert r.status_code == 422, r.text
        first = r.json()["detail"][0]
        assert first["loc"] == loc
        if loc == ["body", "watch", 1]:
            assert "watch.1" in first["msg"] and "Texas is big" in first["msg"] and "one token" in first["msg"]


# ------------------------------------------------------------------------------------------- tokenize
def test_tokenize_reads_targets_as_typed(tiny_server):
    with tiny_server.client() as c:
        r = c.post("/api/tokenize", json={"prompt": PROMPT, "top_k": 50, "targets": [" Texas", "Texas", "a b c"]})
        assert r.status_code == 200, r.text
        out = r.json()
        texas, bare, many = out["targets"]
        assert texas["text"] == " Texas" and texas["ids"] == [321] and texas["single"] is True
        assert bare["text"] == "Texas" and bare["ids"] != texas["ids"]  # the leading space is part of the token
        assert many["single"] is False and len(many["ids"]) == 3 and many["prob"] is None
        assert 0 < texas["prob"] <= 1
        top = {t["id"]: t["prob"] for t in out["top_next"]}
        for t in (texas, bare):
            if t["single"] and t["ids"][0] in top:
                assert t["prob"] == pytest.approx(top[t["ids"][0]], abs=1e-7)
        plain = c.post("/api/tokenize", json={"prompt": PROMPT}).json()
        assert plain["targets"] == []
        r = c.post("/api/tokenize", json={"prompt": PROMPT, "targets": ["a"] * 11})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "targets"]


def test_tokenize_targets_without_the_model_while_busy(held_server, held_engine):
    with held_server.client() as c:
        job = c.post("/api/graphs", json={"prompt": "hold the model"}).json()
        assert held_engine.started.wait(5)
        held_server.settings.preview_wait_s = 0.05
        out = c.post("/api/tokenize", json={"prompt": "a b", "top_k": 2, "targets": ["x", "y z"]}).json()
        assert out["busy"] is True and out["top_next"] == []
        assert [(t["single"], t["prob"]) for t in out["targets"]] == [(True, None), (False, None)]
        held_engine.gate.set()
        assert wait_job(c, job["job_id"])["status"] == "done"


# ------------------------------------------------------------------------------------------- progress
def test_progress_only_moves_forward_and_ends_done(held_server, held_engine):
    with held_server.client() as c:
        job = c.post("/api/graphs", json={"prompt": "Dallas is in the state of"}).json()
        assert held_engine.started.wait(5)
        running = c.get(f"/api/jobs/{job['job_id']}").json()
        assert running["status"] == "running" and 0 < running["fraction"] < 0.1  # "forward" done, features not
        with SSEReader(held_server, job["events_url"]) as reader:
            held_engine.gate.set()
        fractions = [d["fraction"] for _, d in reader.events]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0
        phases = [(d["phase"], d["fraction"]) for n, d in reader.events if n == "progress"]
        assert [p for p, _ in phases][-3:] == ["features", "prune", "export"]
        assert all(0 <= f < 1 for _, f in phases)
        etas = [d["eta_s"] for n, d in reader.events if n == "progress" and d["fraction"] >= 0.02]
        assert etas and all(e is not None and e >= 0 for e in etas)
        name, last = reader.events[-1]
        assert name == "done" and last["phase"] == "done" and last["done"] == last["total"] and last["eta_s"] == 0
        final = c.get(f"/api/jobs/{job['job_id']}").json()
        assert final["status"] == "done" and final["phase"] == "done" and final["done"] == final["total"]
        assert final["fraction"] == 1.0


def test_queued_job_has_no_progress(held_server, held_engine):
    with held_server.client() as c:
        c.post("/api/graphs", json={"prompt": "first one"})
        assert held_engine.started.wait(5)
        queued = c.get(c.post("/api/graphs", json={"prompt": "second one"}).json()["status_url"]).json()
        assert queued["status"] == "queued" and queued["fraction"] == 0 and queued["eta_s"] is None
        held_engine.gate.set()


# ------------------------------------------------------------------------------------------- saved views
def test_saved_views_are_listed_by_name_and_date(fake_server):
    with fake_server.client() as c:
        slug = wait_job(c, c.post("/api/graphs", json={"prompt": "a b c"}).json()["job_id"])["slug"]
        node = c.get(f"/api/graphs/{slug}").json()["nodes"][0]["node_id"]
        for name in ("first look", "the circuit"):
            assert c.post(f"/api/graphs/{slug}/subgraphs", json={"name": name, "pinnedIds": [node]}).status_code == 201
        listed = c.get(f"/api/graphs/{slug}/subgraphs").json()
        assert [v["name"] for v in listed] == ["the circuit", "first look"]  # newest first
        assert all({"id", "name", "created_at"} <= set(v) for v in listed)
        assert listed[0]["created_at"] >= listed[1]["created_at"]


# ------------------------------------------------------------------------------------------- round trip
def test_circuit_tracer_file_round_trips_with_its_own_ids(shared_server):
    """circuit-tracer 0.5.0's own writer made this file (fixtures/make_ct_fixtures.py): error ids 0_{layer}_{pos}."""
    raw = (FIXTURES / "ct050_dallas.json").read_bytes()
    original = json.loads(raw)
    assert any(re.fullmatch(r"0_\d+_\d+", n["node_id"]) for n in original["nodes"] if "error" in n["feature_type"])
    with shared_server.client() as c:
        r = c.post("/api/graphs/import", files={"file": ("ct050_dallas.json", raw, "application/json")})
        assert r.status_code == 201, r.text
        assert r.json()["slug"] == "ct050_dallas"
        exported = c.get(f"/api/graphs/{r.json()['slug']}/export").json()
        assert exported == original  # the whole file, key order aside
        again = c.post("/api/graphs/import", json=exported).json()
        second = c.get(f"/api/graphs/{again['slug']}/export").json()
        assert second["nodes"] == original["nodes"] and second["links"] == original["links"]
        assert second["metadata"]["slug"] == again["slug"] != "ct050_dallas"


def test_colliding_circuit_tracer_ids_are_refused_with_the_reason(shared_server):
    raw = (FIXTURES / "ct050_collision.json").read_bytes()
    with shared_server.client() as c:
        r = c.post("/api/graphs/import", files={"file": ("c.json", raw, "application/json")})
        assert r.status_code == 422, r.text
        first = r.json()["detail"][0]
        assert first["loc"][:3] == ["body", "file", "nodes"] and first["loc"][-1] == "node_id"
        assert "duplicate '0_1_6'" in first["msg"] and "circuit-tracer" in first["msg"]


def test_own_graph_ids_cannot_collide_and_round_trip(tiny_server):
    with tiny_server.client() as c:
        job = c.post("/api/graphs", json={"prompt": "Dallas is in the state of", "max_feature_nodes": 60}).json()
        slug = wait_job(c, job["job_id"])["slug"]
        graph = c.get(f"/api/graphs/{slug}/export").json()
        ids = [n["node_id"] for n in graph["nodes"]]
        assert len(ids) == len(set(ids))
        for n in graph["nodes"]:
            if n["feature_type"] == "mlp reconstruction error":
                assert n["node_id"] == f"{n['layer']}_-1_{n['ctx_idx']}"
            elif n["feature_type"] == "cross layer transcoder":
                layer, index, pos = map(int, n["node_id"].split("_"))
                assert (str(layer), pos) == (n["layer"], n["ctx_idx"]) and index >= 0
        imported = c.post("/api/graphs/import", json=graph).json()
        back = c.get(f"/api/graphs/{imported['slug']}/export").json()
        assert back["nodes"] == graph["nodes"] and back["links"] == graph["links"]


def test_graphs_stored_before_keep_reading(tmp_path, fake_engine):
    """Imports used to rename circuit-tracer's error ids to {layer}_-1_{pos}; such stored graphs still serve."""
    settings = make_settings(tmp_path)
    old = json.loads((FIXTURES / "ct050_dallas.json").read_text())
    renamed = {n["node_id"]: f"{n['layer']}_-1_{n['ctx_idx']}" for n in old["nodes"] if "error" in n["feature_type"]}
    for n in old["nodes"]:
        n["node_id"] = renamed.get(n["node_id"], n["node_id"])
    for link in old["links"]:
        for end in ("source", "target"):
            link[end] = renamed.get(link[end], link[end])
    store = Store(settings.resolved_database_url)
    store.graphs.add(old, prompt="old", model="m", transcoders="t", source="imported", digest="ab" * 8)
    store.close()
    with live_server(settings, lambda: fake_engine) as server, server.client() as c:
        slug = c.get("/api/graphs").json()["items"][0]["slug"]
        graph = c.get(f"/api/graphs/{slug}").json()
        assert graph["nodes"] == old["nodes"] and graph["links"] == old["links"]
        err = next(iter(renamed.values()))
        assert c.post(f"/api/graphs/{slug}/subgraphs", json={"pinnedIds": [err]}).status_code == 201
