"""Every bad input answers 4xx with a message naming the field, never 500."""

from __future__ import annotations

import pytest


def _named(r, field: str) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    detail = r.json()["detail"]
    text = detail if isinstance(detail, str) else " ".join(f"{'.'.join(map(str, d['loc']))} {d['msg']}" for d in detail)
    assert field in text, text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": " ".join(["w"] * 256)}, "prompt"),  # 257 tokens with BOS
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 10_001}, "prompt"),
        ({}, "prompt"),
        ({"prompt": "ok", "max_n_logits": 0}, "max_n_logits"),
        ({"prompt": "ok", "max_n_logits": 1000}, "max_n_logits"),
        ({"prompt": "ok", "max_n_logits": "many"}, "max_n_logits"),
        ({"prompt": "ok", "desired_logit_prob": 1.5}, "desired_logit_prob"),
        ({"prompt": "ok", "node_threshold": -1}, "node_threshold"),
        ({"prompt": "ok", "edge_threshold": 2}, "edge_threshold"),
        ({"prompt": "ok", "max_feature_nodes": 10**9}, "max_feature_nodes"),
        ({"prompt": "ok", "target_tokens": ["a"] * 11}, "target_tokens"),
        ({"prompt": "ok", "target_tokens": [""]}, "target_tokens"),
        ({"prompt": "ok", "slug": "Not A Slug!"}, "slug"),
        ({"prompt": "ok", "node_treshold": 0.5}, "node_treshold"),
    ],
)
def test_bad_graph_requests(shared_server, body, field):
    with shared_server.client() as c:
        _named(c.post("/api/graphs", json=body), field)


def test_prompt_at_limit_is_accepted(shared_server):
    with shared_server.client() as c:
        r = c.post("/api/graphs", json={"prompt": " ".join(["w"] * 255)})
        assert r.status_code == 202, r.text


def test_bad_json_body(shared_server):
    with shared_server.client() as c:
        r = c.post("/api/graphs", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422


def test_unknown_slugs(shared_server):
    with shared_server.client() as c:
        for method, path in [
            ("GET", "/api/graphs/no-such-graph"),
            ("GET", "/api/graphs/no-such-graph/export"),
            ("DELETE", "/api/graphs/no-such-graph"),
            ("GET", "/api/graphs/no-such-graph/subgraphs"),
            ("GET", "/api/graphs/no-such-graph/subgraphs/abc"),
        ]:
            r = c.request(method, path)
            assert r.status_code == 404, (method, path)
            assert "slug" in r.json()["detail"] and "no-such-graph" in r.json()["detail"]
        _named(c.post("/api/graphs/no-such-graph/subgraphs", json={}), "slug")


def test_bad_paging(shared_server):
    with shared_server.client() as c:
        _named(c.get("/api/graphs", params={"page": 0}), "page")
        _named(c.get("/api/graphs", params={"per_page": 1000}), "per_page")


def test_taken_slug_conflicts(fake_server):
    with fake_server.client() as c:
        r = c.post("/api/graphs", json={"prompt": "first graph", "slug": "my-graph"})
        job = r.json()
        from cbapi_support import wait_job

        assert wait_job(c, job["job_id"])["slug"] == "my-graph"
        r = c.post("/api/graphs", json={"prompt": "another graph", "slug": "my-graph"})
        assert r.status_code == 409 and "slug" in r.json()["detail"]


def test_bad_tokenize(shared_server):
    with shared_server.client() as c:
        _named(c.post("/api/tokenize", json={"prompt": ""}), "prompt")
        _named(c.post("/api/tokenize", json={"prompt": "x", "top_k": -1}), "top_k")
        r = c.post("/api/tokenize", json={"prompt": " ".join(["w"] * 300), "top_k": 3})
        assert r.status_code == 200
        body = r.json()
        assert body["n_tokens"] == 301 and body["too_long"] is True and len(body["top_next"]) == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "a b", "interventions": [{"layer": 5, "feature": 0, "mode": "zero"}]}, "layer"),
        ({"prompt": "a b", "interventions": [{"layer": 0, "feature": 99, "mode": "zero"}]}, "feature"),
        ({"prompt": "a b", "interventions": [{"layer": 0, "feature": 1, "mode": "boost"}]}, "mode"),
        ({"prompt": "a b", "interventions": [{"layer": 0, "feature": 1, "position": 3, "mode": "set"}]}, "position"),
        ({"prompt": "a b", "n_tokens": 1000}, "n_tokens"),
        ({"prompt": "a b", "top_k": 0}, "top_k"),
        ({"prompt": "a b", "temperature": 9}, "temperature"),
        ({"prompt": " ".join(["w"] * 300)}, "prompt"),  # past max_prompt_tokens (256)
    ],
)
def test_bad_interventions(shared_server, body, field):
    with shared_server.client() as c:
        _named(c.post("/api/interventions", json=body), field)
