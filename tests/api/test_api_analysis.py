"""Circuit analysis routes on the real Engine with a tiny checkpoint: suggest, validate, diff."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cbapi_support import live_server, make_settings, sse_events, wait_job

from circuitboard.atlas.store import AtlasStore, pack_examples
from circuitboard.devtools.tiny import build_tiny_checkpoint

PROMPT_A = "The capital of Texas is"
PROMPT_B = "The capital of the is"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("tiny")
    model_dir, tc_dir = build_tiny_checkpoint(ckpt, arch="llama", seed=0)
    settings = make_settings(
        tmp_path_factory.mktemp("srv"), model_path=str(model_dir), transcoders_path=str(tc_dir), device="cpu"
    )
    with live_server(settings) as srv:
        assert srv.wait_engine() == "ready"
        yield srv


def _trace(c, prompt: str) -> str:
    r = c.post("/api/graphs", json={"prompt": prompt, "max_feature_nodes": 60, "node_threshold": 0.95})
    assert r.status_code in (201, 202), r.text
    if r.status_code == 201:
        return r.json()["slug"]
    job = wait_job(c, r.json()["job_id"])
    assert job["status"] == "done", job
    return job["slug"]


@pytest.fixture(scope="module")
def slugs(server):
    with server.client() as c:
        return _trace(c, PROMPT_A), _trace(c, PROMPT_B)


def _features(c, slug: str) -> list[str]:
    graph = c.get(f"/api/graphs/{slug}").json()
    return [n["node_id"] for n in graph["nodes"] if n["feature_type"] == "cross layer transcoder"]


def _atlas(path, labels: dict[tuple[int, int], str]) -> None:
    """A hand-written atlas with a label and one top output token per feature."""
    store = AtlasStore(path, create=True)
    store.put_vocab({7: " Austin"})
    empty = pack_examples(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 0)))
    for layer in sorted({k[0] for k in labels}):
        rows, search = [], []
        for (lay, idx), label in sorted(labels.items()):
            if lay == layer:
                logits = json.dumps({"top": [[7, 1.0]], "bottom": []})
                hist = json.dumps({"hi": 1.0, "counts": []})
                rows.append((lay, idx, 1.0, 1.0, 0.1, 1, hist, logits, "[]", empty, label))
                search.append((lay, idx, 1.0, 0.1, label, label.lower()))
        store.put_layer(layer, rows, search, seconds=0.0)


def test_suggest(server, slugs, tmp_path):
    slug = slugs[0]
    with server.client() as c:
        ids = set(_features(c, slug))
        r = c.post(f"/api/graphs/{slug}/supernodes/suggest", json={"granularity": 0.3})
        assert r.status_code == 200, r.text
        out = r.json()
        assert len(out["supernodes"]) == len(out["scores"]) > 0
        assert all(isinstance(sn[0], str) and len(sn) >= 3 and set(sn[1:]) <= ids for sn in out["supernodes"])
        assert all(0 <= s <= 1 for s in out["scores"])
        assert c.post(f"/api/graphs/{slug}/supernodes/suggest", json={"granularity": 1.0}).json()["supernodes"] == []
        pins = sorted(ids)[:4]
        pinned = c.post(
            f"/api/graphs/{slug}/supernodes/suggest", json={"granularity": 0.0, "pinned_only": True, "pinned_ids": pins}
        ).json()
        assert all(set(sn[1:]) <= set(pins) for sn in pinned["supernodes"])
        assert c.post("/api/graphs/nope/supernodes/suggest", json={}).status_code == 404
        assert c.post(f"/api/graphs/{slug}/supernodes/suggest", json={"granularity": 2}).status_code == 422

        # With an atlas, a group's label comes from its members' labels.
        path = tmp_path / "atlas.sqlite"
        _atlas(path, {(int(n.split("_")[0]), int(n.split("_")[1])): "Texas things" for n in ids})
        server.app.state.atlas = path
        try:
            labelled = c.post(f"/api/graphs/{slug}/supernodes/suggest", json={"granularity": 0.3}).json()
        finally:
            del server.app.state.atlas
        assert {sn[0] for sn in labelled["supernodes"]} == {"Texas things"}


def _validated(c, slug: str, body: dict) -> dict:
    """POST a validation (202 with its job), follow the job to its end, read its result."""
    r = c.post(f"/api/graphs/{slug}/validate", json=body)
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert job["kind"] == "validate" and job["status"] in ("queued", "running") and job["result_url"] is None
    done = wait_job(c, job["id"])
    assert done["status"] == "done", done
    assert done["kind"] == "validate" and done["result_url"] == f"/api/jobs/{job['id']}/result"
    assert done["phase"] == "done" and done["done"] == done["total"] > 0 and done["fraction"] == 1.0
    result = c.get(done["result_url"])
    assert result.status_code == 200, result.text
    return result.json()


def test_validate(server, slugs):
    slug = slugs[0]
    with server.client() as c:
        feats = _features(c, slug)
        body = {"supernodes": [["first", *feats[:3]], ["second", *feats[3:5]]], "modes": ["frozen", "free"]}
        out = _validated(c, slug, body)
        assert [g["label"] for g in out["groups"]] == ["first", "second"]
        assert out["measured_mode"] == "free" and out["targets"]
        for g in out["groups"]:
            assert set(g["ablate"]["measured"]) == {"frozen", "free"}
            assert set(g["steer"]) == {"x-1", "x2"}
            assert isinstance(g["predicted_effect"], float) and isinstance(g["agrees"], bool)
            assert g["measured_effect"] == g["ablate"]["measured_effect"]["free"]
            assert len(g["ablate"]["predicted"]) == len(out["targets"])
        assert set(out["circuit"]) == {"sufficiency", "necessity"}
        one = _validated(c, slug, {**body, "modes": ["frozen"], "targets": out["targets"][:1]})
        assert one["targets"] == out["targets"][:1]

        bad = c.post(f"/api/graphs/{slug}/validate", json={"supernodes": [["x", "E_1_0"]]})
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["body", "supernodes", 0, 1]
        assert c.post(f"/api/graphs/{slug}/validate", json={"supernodes": []}).status_code == 422
        assert c.post("/api/graphs/nope/validate", json=body).status_code == 404
        bad_target = c.post(f"/api/graphs/{slug}/validate", json={**body, "targets": ["nope"]})
        assert bad_target.status_code == 422 and bad_target.json()["detail"][0]["loc"] == ["body", "targets"]
        assert c.get("/api/jobs/nope/result").status_code == 404


def test_validate_job_streams_progress_and_cancels(server, slugs):
    slug = slugs[0]
    with server.client() as c:
        feats = _features(c, slug)
        body = {"supernodes": [[f"g{i}", f] for i, f in enumerate(feats[:6])], "modes": ["frozen", "free"]}
        job = c.post(f"/api/graphs/{slug}/validate", json=body).json()["job"]
        events = sse_events(c, f"/api/jobs/{job['id']}/events")
        assert events[-1][0] == "done"
        progress = [e for name, e in events if name == "progress" and e["phase"] == "validate"]
        assert progress and all(e["kind"] == "validate" and e["total"] == 2 * (1 + 3 * 6 + 2) for e in progress)
        fractions = [e["fraction"] for e in progress]
        assert fractions == sorted(fractions) and 0 < fractions[-1] <= 1

        # A job that has not finished has no result yet (409); cancelled, it never gets one. (Two different
        # validations: an identical one while the first is queued or running would be the same job.)
        bodies = [body, {**body, "modes": ["frozen"]}]
        queued = [c.post(f"/api/graphs/{slug}/validate", json=b).json()["job"] for b in bodies]
        assert queued[0]["id"] != queued[1]["id"]
        assert c.get(f"/api/jobs/{queued[1]['id']}/result").status_code == 409
        assert c.delete(f"/api/jobs/{queued[1]['id']}").json()["status"] == "cancelled"
        assert wait_job(c, queued[0]["id"])["status"] == "done"
        assert c.get(f"/api/jobs/{queued[1]['id']}/result").status_code == 409


def test_diff(server, slugs):
    a, b = slugs
    with server.client() as c:
        same = c.get(f"/api/graphs/{a}/diff/{a}")
        assert same.status_code == 200, same.text
        assert same.json()["nodes"] == [] and same.json()["links"] == []
        assert same.json()["summary"]["changed"] == same.json()["summary"]["only_a"] == 0
        d = c.get(f"/api/graphs/{a}/diff/{b}").json()
        assert d["nodes"] and set(d["summary"]) == {"only_a", "only_b", "shared", "changed"}
        assert any(n["feature_type"] == "embedding" and n["ctx_idx_a"] == 4 for n in d["nodes"])
        full = c.get(f"/api/graphs/{a}/diff/{b}", params={"all": True}).json()
        assert len(full["nodes"]) > len(d["nodes"])
        assert c.get(f"/api/graphs/{a}/diff/nope").status_code == 404


def test_graphs_of_another_model(server, slugs):
    a = slugs[0]
    with server.client() as c:
        graph = c.get(f"/api/graphs/{a}").json()
        graph["metadata"]["info"]["model"] = "another-model"
        graph["metadata"]["slug"] = "other-model-graph"
        imp = c.post("/api/graphs/import", files={"file": ("g.json", json.dumps(graph), "application/json")})
        assert imp.status_code == 201, imp.text
        other = imp.json()["slug"]
        r = c.get(f"/api/graphs/{a}/diff/{other}")
        assert r.status_code == 409 and "different models" in r.json()["detail"]
        feats = _features(c, other)
        v = c.post(f"/api/graphs/{other}/validate", json={"supernodes": [["x", feats[0]]]})
        assert v.status_code == 409 and "not the loaded model" in v.json()["detail"]
        # Suggestions need no engine: they still work, on the graph alone.
        assert c.post(f"/api/graphs/{other}/supernodes/suggest", json={}).status_code == 200
