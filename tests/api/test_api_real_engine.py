"""The service end to end on the real Engine with a tiny random checkpoint (circuitboard.devtools.tiny)."""

from __future__ import annotations

import time

import pytest
from cbapi_support import live_server, make_settings, sse_events, wait_job

from circuitboard.devtools.tiny import build_tiny_checkpoint

PROMPT = "The capital of Texas is"


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("tiny")
    model_dir, tc_dir = build_tiny_checkpoint(ckpt, arch="llama", seed=0)
    # No engine_factory: the app loads the model the way `serve --model --transcoders` does.
    settings = make_settings(
        tmp_path_factory.mktemp("srv"), model_path=str(model_dir), transcoders_path=str(tc_dir), device="cpu"
    )
    with live_server(settings) as server:
        assert server.wait_engine() == "ready"
        yield server


def test_config_and_tokenize(tiny_server):
    with tiny_server.client() as c:
        cfg = c.get("/api/config").json()
        assert cfg["model"]["n_layers"] == 3 and cfg["model"]["d_transcoder"] == 128
        assert cfg["transcoders"] == cfg["model"]["transcoder_name"]
        assert cfg["device"] == "cpu" and cfg["engine"] == "ready"
        tok = c.post("/api/tokenize", json={"prompt": PROMPT, "top_k": 5}).json()
        assert [t["text"] for t in tok["tokens"]] == ["<bos>", "The", " capital", " of", " Texas", " is"]
        assert tok["n_tokens"] == 6 and tok["too_long"] is False and tok["busy"] is False
        assert len(tok["top_next"]) == 5
        probs = [t["prob"] for t in tok["top_next"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1


def test_trace_progress_graph_cache_and_export(tiny_server):
    with tiny_server.client() as c:
        r = c.post("/api/graphs", json={"prompt": PROMPT, "max_feature_nodes": 50})
        assert r.status_code == 202, r.text
        events = sse_events(c, r.json()["events_url"])
        assert events[-1][0] == "done", events
        slug = events[-1][1]["slug"]
        assert slug.startswith("the-capital-of-texas-")
        graph = c.get(f"/api/graphs/{slug}").json()
        md = graph["metadata"]
        assert md["slug"] == slug and md["prompt"] == PROMPT
        assert md["prompt_tokens"][-1] == " is"
        kinds = {n["feature_type"] for n in graph["nodes"]}
        assert {"embedding", "logit"} <= kinds
        ids = {n["node_id"] for n in graph["nodes"]}
        assert all(link["source"] in ids and link["target"] in ids for link in graph["links"])
        assert md["info"]["params"]["max_feature_nodes"] == 50

        t0 = time.perf_counter()
        again = c.post("/api/graphs", json={"prompt": PROMPT, "max_feature_nodes": 50})
        assert time.perf_counter() - t0 < 1.0  # a cache hit never touches the model
        assert again.status_code == 201 and again.json()["slug"] == slug
        other = c.post("/api/graphs", json={"prompt": PROMPT, "max_feature_nodes": 40})
        assert other.status_code == 202
        other_slug = wait_job(c, other.json()["job_id"])["slug"]
        assert other_slug != slug and other_slug.startswith("the-capital-of-texas-")

        listed = c.get("/api/graphs", params={"q": "texas"}).json()
        assert {i["slug"] for i in listed["items"]} >= {slug, other_slug}
        assert all(i["source"] == "traced" for i in listed["items"])

        exported = c.get(f"/api/graphs/{slug}/export").content
        imp = c.post("/api/graphs/import", files={"file": ("g.json", exported, "application/json")})
        assert imp.status_code == 201, imp.text
        assert imp.json()["n_nodes"] == len(graph["nodes"])
        assert c.get(imp.json()["graph_url"]).json()["nodes"] == graph["nodes"]


def test_targets(tiny_server):
    with tiny_server.client() as c:
        r = c.post("/api/graphs", json={"prompt": PROMPT, "target_tokens": [" Texas"], "max_feature_nodes": 20})
        assert r.status_code == 202, r.text
        done = wait_job(c, r.json()["job_id"])
        assert done["status"] == "done", done
        graph = c.get(f"/api/graphs/{done['slug']}").json()
        logits = [n for n in graph["nodes"] if n["feature_type"] == "logit"]
        assert [n["node_id"].split("_")[1] for n in logits] == ["321"]
        bad = c.post("/api/graphs", json={"prompt": PROMPT, "target_tokens": [" Texas", "Texas is big"]})
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["body", "target_tokens", 1]
        assert "target_tokens.1" in bad.json()["detail"][0]["msg"]


def test_prompt_over_token_limit(tiny_server):
    with tiny_server.client() as c:
        r = c.post("/api/graphs", json={"prompt": "The capital of Texas is Austin. " * 40})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "prompt"]
        assert "limit of 256" in r.json()["detail"][0]["msg"]


def test_interventions(tiny_server):
    with tiny_server.client() as c:
        body = {
            "prompt": PROMPT,
            "interventions": [{"layer": 0, "feature": 5, "position": None, "mode": "set", "value": 50.0}],
            "n_tokens": 3,
            "top_k": 4,
        }
        r = c.post("/api/interventions", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert len(out["before"]["top"]) == 4 and isinstance(out["before"]["continuation"], str)
        assert out["before"]["top"] != out["after"]["top"]
        bad = c.post("/api/interventions", json={**body, "interventions": [{**body["interventions"][0], "layer": 3}]})
        assert bad.status_code == 422 and "layer" in bad.text
        bad = c.post(
            "/api/interventions", json={**body, "interventions": [{**body["interventions"][0], "feature": 128}]}
        )
        assert bad.status_code == 422 and "feature" in bad.text


def test_trace_back_from_a_feature(tiny_server):
    """`target_features` (issue 13): the graph's target is a feature of an earlier graph, and bad input is a 4xx."""
    with tiny_server.client() as c:
        r = c.post("/api/graphs", json={"prompt": PROMPT, "max_feature_nodes": 40, "slug": "feature-source"})
        slug = r.json()["slug"] if r.status_code == 201 else sse_events(c, r.json()["events_url"])[-1][1]["slug"]
        graph = c.get(f"/api/graphs/{slug}").json()
        feat = next(n for n in graph["nodes"] if n["feature_type"] == "cross layer transcoder" and int(n["layer"]) > 0)
        target = [int(x) for x in feat["node_id"].split("_")]  # feature node ids are {layer}_{index}_{pos}
        r = c.post("/api/graphs", json={"prompt": PROMPT, "max_feature_nodes": 40, "target_features": [target]})
        assert r.status_code == 202, r.text
        events = sse_events(c, r.json()["events_url"])
        assert events[-1][0] == "done", events
        traced = c.get(f"/api/graphs/{events[-1][1]['slug']}").json()
        assert traced["metadata"]["info"]["params"]["target_features"] == [target]
        layers = {int(n["layer"]) for n in traced["nodes"] if n["feature_type"] == "cross layer transcoder"}
        assert layers and max(layers) < target[0]  # only what feeds the target: earlier layers

        both = {"prompt": PROMPT, "target_tokens": [" is"], "target_features": [target]}
        r = c.post("/api/graphs", json=both)
        assert r.status_code == 422 and "target_features" in r.text
        r = c.post("/api/graphs", json={"prompt": PROMPT, "target_features": [[0, -1, 1]]})
        assert r.status_code == 422 and "target_features" in r.text
        r = c.post("/api/graphs", json={"prompt": PROMPT, "target_features": [[99, 0, 1]]})
        if r.status_code == 202:  # out of the model's range: the job fails with a message naming the field
            events = sse_events(c, r.json()["events_url"])
            assert events[-1][0] == "failed" and "target_features.0" in events[-1][1]["error"]
        else:
            assert r.status_code == 422 and "target_features" in r.text
