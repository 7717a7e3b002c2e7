"""Issue 14.5: every bad input a fuzzer and a careless colleague found is a 4xx naming the field, never a 500."""

from __future__ import annotations

import copy
import json

import pytest
from cbapi_support import live_server, make_settings, wait_job
from test_api_import_export import CT_GRAPH


def _named(r, field: str) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    detail = r.json()["detail"]
    text = detail if isinstance(detail, str) else " ".join(f"{'.'.join(map(str, d['loc']))} {d['msg']}" for d in detail)
    assert field in text, text


def _raw(c, path: str, text: str, method: str = "POST"):
    return c.request(method, path, content=text.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        # non-finite numbers (Python's json reads NaN, Infinity and 1e400 as floats)
        ("/api/graphs", '{"prompt": "ok", "node_threshold": NaN}', "node_threshold"),
        ("/api/graphs", '{"prompt": "ok", "desired_logit_prob": Infinity}', "desired_logit_prob"),
        ("/api/graphs", '{"prompt": "ok", "edge_threshold": 1e400}', "edge_threshold"),
        ("/api/interventions", '{"prompt": "a b", "temperature": NaN}', "temperature"),
        (
            "/api/interventions",
            '{"prompt": "a", "interventions": [{"layer": 0, "feature": 1, "mode": "set", "value": NaN}]}',
            "value",
        ),  # noqa: E501
        (
            "/api/interventions",
            '{"prompt": "a", "interventions": [{"layer": 0, "feature": 1, "mode": "set", "value": -1e999}]}',
            "value",
        ),  # noqa: E501
        # lone surrogates, which the error handler used to fail to serialise
        ("/api/graphs", '{"prompt": "\\ud800"}', "prompt"),
        ("/api/graphs", '{"prompt": "ok", "slug": "\\udfff"}', "slug"),
        ("/api/tokenize", '{"prompt": "a \\ud800 b"}', "prompt"),
        ("/api/interventions", '{"prompt": "ok", "watch": ["\\ud800"]}', "watch"),
        ("/api/graphs", '{"prompt": "ok", "\\ud800": 1}', "body"),
        # integers past 2**63
        (
            "/api/interventions",
            '{"prompt": "a", "interventions": [{"layer": 99999999999999999999, "feature": 1, "mode": "zero"}]}',
            "layer",
        ),  # noqa: E501
        ("/api/interventions", '{"prompt": "a", "seed": 999999999999999999999999}', "seed"),
        # temperature: 0, or within the documented range
        ("/api/interventions", '{"prompt": "a b", "temperature": 1e-40}', "temperature"),
        ("/api/interventions", '{"prompt": "a b", "temperature": -1}', "temperature"),
    ],
)
def test_bad_values(shared_server, path, body, field):
    with shared_server.client() as c:
        _named(_raw(c, path, body), field)


@pytest.fixture(scope="module")
def atlas_server(tmp_path_factory):
    from atlas_support import small_atlas

    tmp = tmp_path_factory.mktemp("atlas")
    small_atlas(tmp / "atlas.sqlite", {(0, 1): (0.1, "one"), (1, 1): (0.2, "two")})
    with live_server(make_settings(tmp, load_engine=False, atlas_path=tmp / "atlas.sqlite")) as server:
        yield server


def test_huge_integers_in_paths_and_queries(atlas_server):
    with atlas_server.client() as c:
        _named(c.post("/api/features/labels", json={"features": [[2**70, 1]]}), "features")
        _named(c.get("/api/graphs", params={"page": 2**70}), "page")
        _named(c.get(f"/api/features/{2**70}/1"), "layer")
        _named(c.get(f"/api/features/0/{2**64}"), "index")
        _named(c.put(f"/api/features/{2**70}/1/label", json={"label": "x"}), "layer")
        _named(c.post(f"/api/features/1/{2**70}/explain"), "index")


def test_deep_json_bodies(shared_server):
    deep = "[" * 5000 + "]" * 5000
    with shared_server.client() as c:
        r = _raw(c, "/api/graphs/import", deep)
        _named(r, "file")
        assert "nested deeper" in r.text
        r = _raw(c, "/api/graphs/import", json.dumps({**CT_GRAPH, "extra": json.loads("[" * 200 + "]" * 200)}))
        _named(r, "file")
        r = _raw(c, "/api/graphs", '{"prompt": ' + deep + "}")
        assert 400 <= r.status_code < 500


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda g: g["nodes"][1].update(layer="three"), "layer"),
        (lambda g: g["nodes"][1].update(layer=-2), "layer"),
        (lambda g: g["nodes"][1].update(influence=float("nan")), "file"),
        (lambda g: g["links"][0].update(weight=float("inf")), "file"),
        (lambda g: g["nodes"][1].update(ctx_idx=2**70), "ctx_idx"),
        (lambda g: g["metadata"].update(prompt="\ud800"), "prompt"),
    ],
)
def test_bad_import_values(shared_server, mutate, field):
    g = copy.deepcopy(CT_GRAPH)
    mutate(g)
    with shared_server.client() as c:
        r = c.post("/api/graphs/import", files={"file": ("g.json", json.dumps(g), "application/json")})
        _named(r, field)
        assert "file" in r.text


def test_same_file_imported_many_times_gets_fresh_slugs(shared_server):
    doc = {**CT_GRAPH, "metadata": {**CT_GRAPH["metadata"], "slug": "again-and-again"}}
    with shared_server.client() as c:
        slugs = [c.post("/api/graphs/import", json=doc).json()["slug"] for _ in range(8)]
    assert len(set(slugs)) == 8 and slugs[0] == "again-and-again"


def test_import_caps_nodes_and_links_before_parsing(tmp_path, fake_engine):
    settings = make_settings(tmp_path, max_import_nodes=10, max_import_links=5)
    many_links = {**CT_GRAPH, "links": CT_GRAPH["links"] * 2}
    many_nodes = copy.deepcopy(CT_GRAPH)
    many_nodes["nodes"] += [{**CT_GRAPH["nodes"][0], "node_id": f"E_{i}_0"} for i in range(10)]
    with live_server(settings, lambda: fake_engine) as server, server.client() as c:
        r = c.post("/api/graphs/import", json=many_links)
        assert r.status_code == 413 and "file.links" in r.json()["detail"] and "limit of 5" in r.json()["detail"]
        r = c.post("/api/graphs/import", json=many_nodes)
        assert r.status_code == 413 and "file.nodes" in r.json()["detail"]
        assert c.post("/api/graphs/import", json=CT_GRAPH).status_code == 201


def test_saved_views_refuse_unknown_ids_and_non_finite_positions(fake_server):
    with fake_server.client() as c:
        slug = wait_job(c, c.post("/api/graphs", json={"prompt": "a b"}).json()["job_id"])["slug"]
        ok = c.get(f"/api/graphs/{slug}").json()["nodes"][0]["node_id"]
        for body, field in [
            ({"clerps": [["99_9_9", "label of nothing"]]}, "clerps"),
            ({"sgPos": [["99_9_9", 1.0, 2.0]]}, "sgPos"),
            ({"sgPos": [[ok, 1.0, 2.0]], "pruningThreshold": 7}, "pruningThreshold"),
        ]:
            _named(c.post(f"/api/graphs/{slug}/subgraphs", json=body), field)
        r = _raw(c, f"/api/graphs/{slug}/subgraphs", json.dumps({"sgPos": [[ok, 1.0, 2.0]]}).replace("1.0", "NaN"))
        _named(r, "sgPos")
        r = _raw(c, f"/api/graphs/{slug}/subgraphs", json.dumps({"sgPos": [[ok, 1.0, 2.0]]}).replace("2.0", "1e400"))
        _named(r, "sgPos")
        assert c.post(
            f"/api/graphs/{slug}/subgraphs", json={"sgPos": [[ok, 1.0, 2.0]], "clerps": [[ok, "x"]]}
        ).is_success


def test_saved_views_per_graph_are_capped(tmp_path, fake_engine):
    with live_server(make_settings(tmp_path, max_saved_views=3), lambda: fake_engine) as server, server.client() as c:
        slug = wait_job(c, c.post("/api/graphs", json={"prompt": "a b"}).json()["job_id"])["slug"]
        for _ in range(3):
            assert c.post(f"/api/graphs/{slug}/subgraphs", json={}).status_code == 201
        r = c.post(f"/api/graphs/{slug}/subgraphs", json={})
        assert r.status_code == 409 and "subgraphs" in r.json()["detail"] and "3" in r.json()["detail"]
        sid = c.get(f"/api/graphs/{slug}/subgraphs").json()[0]["id"]
        assert c.delete(f"/api/graphs/{slug}/subgraphs/{sid}").status_code == 204
        assert c.post(f"/api/graphs/{slug}/subgraphs", json={}).status_code == 201
