"""Import of circuit-tracer / Neuronpedia graph files, export, listing, delete, compressed storage."""

from __future__ import annotations

import copy
import gzip
import json

import pytest
from cbapi_support import make_settings
from sqlalchemy import create_engine, text

# A graph as circuit-tracer <= 0.5 wrote it: error nodes named 0_{layer}_{pos} (kept as written on import).
CT_GRAPH = {
    "metadata": {
        "slug": "ct-dallas",
        "scan": "gemma-2-2b",
        "transcoder_list": [],
        "prompt_tokens": ["<bos>", "Dallas", " is"],
        "prompt": "<bos>Dallas is",
        "node_threshold": 0.8,
        "schema_version": 1,
        "info": {"creator": "circuit-tracer"},
    },
    "qParams": {"pinnedIds": ["0_1_2"], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
    "nodes": [
        {
            "node_id": "E_2_0",
            "feature": 0,
            "layer": "E",
            "ctx_idx": 0,
            "feature_type": "embedding",
            "token_prob": 0.0,
            "is_target_logit": False,
            "run_idx": 0,
            "reverse_ctx_idx": 0,
            "jsNodeId": "E_2-0",
            "clerp": "",
            "influence": None,
            "activation": None,
        },
        {
            "node_id": "3_77_2",
            "feature": 108,
            "layer": "3",
            "ctx_idx": 2,
            "feature_type": "cross layer transcoder",
            "token_prob": 0.0,
            "is_target_logit": False,
            "run_idx": 0,
            "reverse_ctx_idx": 0,
            "jsNodeId": "3_77-0",
            "clerp": "",
            "influence": 0.3,
            "activation": 4.2,
        },
        {
            "node_id": "0_1_2",
            "feature": -1,
            "layer": "1",
            "ctx_idx": 2,
            "feature_type": "mlp reconstruction error",
            "token_prob": 0.0,
            "is_target_logit": False,
            "run_idx": 0,
            "reverse_ctx_idx": 0,
            "jsNodeId": "1_2-0",
            "clerp": "",
            "influence": 0.5,
            "activation": None,
        },
        {
            "node_id": "27_9_2",
            "feature": 9,
            "layer": "27",
            "ctx_idx": 2,
            "feature_type": "logit",
            "token_prob": 0.9,
            "is_target_logit": True,
            "run_idx": 0,
            "reverse_ctx_idx": 0,
            "jsNodeId": "L_9-2",
            "clerp": 'Output " Texas" (p=0.900)',
            "influence": None,
            "activation": None,
        },
    ],
    "links": [
        {"source": "E_2_0", "target": "3_77_2", "weight": 0.5},
        {"source": "3_77_2", "target": "27_9_2", "weight": 2.0},
        {"source": "0_1_2", "target": "27_9_2", "weight": -0.3},
    ],
}


def test_import_multipart_and_raw_then_export(fake_server, tmp_path):
    with fake_server.client() as c:
        files = {"file": ("graph.json", json.dumps(CT_GRAPH), "application/json")}
        r = c.post("/api/graphs/import", files=files)
        assert r.status_code == 201, r.text
        item = r.json()
        assert item["slug"] == "ct-dallas"
        assert item["source"] == "imported" and item["model"] == "gemma-2-2b"
        assert item["n_nodes"] == 4 and item["n_links"] == 3
        assert item["prompt"] == "<bos>Dallas is"
        g = c.get("/api/graphs/ct-dallas").json()
        ids = {n["node_id"] for n in g["nodes"]}
        assert "0_1_2" in ids and "1_-1_2" not in ids  # the file's own error id, kept everywhere (issue 12.11)
        assert g["nodes"] == CT_GRAPH["nodes"] and g["links"] == CT_GRAPH["links"]
        assert g["qParams"]["pinnedIds"] == ["0_1_2"]
        assert g["nodes"][1]["jsNodeId"] == "3_77-0"  # unknown fields kept

        # the same file as a raw JSON body: stored again under a fresh slug, never overwriting
        r2 = c.post("/api/graphs/import", json=CT_GRAPH)
        assert r2.status_code == 201
        assert r2.json()["slug"].startswith("ct-dallas-") and r2.json()["slug"] != "ct-dallas"

        exp = c.get("/api/graphs/ct-dallas/export")
        assert exp.status_code == 200
        assert exp.headers["content-disposition"] == 'attachment; filename="ct-dallas.json"'
        assert exp.json() == g
        # without gzip in Accept-Encoding the server decompresses
        plain = c.get("/api/graphs/ct-dallas", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.json() == g

        # an exported graph re-imports
        r3 = c.post("/api/graphs/import", files={"file": ("x.json", exp.content, "application/json")})
        assert r3.status_code == 201

        listing = c.get("/api/graphs", params={"q": "dallas"}).json()
        assert listing["total"] == 3 and listing["items"][0]["slug"] == r3.json()["slug"]  # newest first
        assert c.get("/api/graphs", params={"q": "nothing-like-this"}).json()["total"] == 0
        page = c.get("/api/graphs", params={"per_page": 2, "page": 2}).json()
        assert page["page"] == 2 and len(page["items"]) == 1

        assert c.delete("/api/graphs/ct-dallas").status_code == 204
        assert c.get("/api/graphs/ct-dallas").status_code == 404

    # stored compressed
    engine = create_engine(fake_server.settings.resolved_database_url)
    with engine.connect() as con:
        blob, size = con.execute(text("SELECT data, size_bytes FROM graphs LIMIT 1")).one()
    engine.dispose()
    assert blob[:2] == b"\x1f\x8b" and len(blob) < size
    assert json.loads(gzip.decompress(blob))["metadata"]["prompt_tokens"] == CT_GRAPH["metadata"]["prompt_tokens"]


def _broken(path: list, value) -> dict:
    g = copy.deepcopy(CT_GRAPH)
    obj = g
    for key in path[:-1]:
        obj = obj[key]
    if value is KeyError:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value
    return g


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (_broken(["nodes"], KeyError), "nodes"),
        (_broken(["nodes"], []), "nodes"),
        (_broken(["metadata"], KeyError), "metadata"),
        (_broken(["metadata", "prompt_tokens"], "abc"), "prompt_tokens"),
        (_broken(["nodes", 1, "ctx_idx"], -3), "ctx_idx"),
        (_broken(["nodes", 1, "node_id"], "E_2_0"), "node_id"),
        (_broken(["links", 0, "target"], "9_9_9"), "links.0.target"),
        (_broken(["links", 1, "weight"], "heavy"), "weight"),
        ([1, 2, 3], "file"),
    ],
)
def test_malformed_imports(shared_server, doc, field):
    with shared_server.client() as c:
        r = c.post("/api/graphs/import", files={"file": ("g.json", json.dumps(doc), "application/json")})
        assert r.status_code == 422, r.text
        text = json.dumps(r.json()["detail"])
        assert field in text and "file" in text


def test_not_json_and_missing_field(shared_server):
    with shared_server.client() as c:
        r = c.post("/api/graphs/import", files={"file": ("g.json", b"{nope", "application/json")})
        assert r.status_code == 422 and "not valid JSON" in r.text
        r = c.post("/api/graphs/import", files={"other": ("g.json", b"{}", "application/json")})
        assert r.status_code == 422 and "file" in r.text
        r = c.post("/api/graphs/import", content=b"", headers={"content-type": "application/json"})
        assert r.status_code == 422 and "empty" in r.text


def test_oversized_upload(tmp_path, fake_engine):
    from cbapi_support import live_server

    with live_server(make_settings(tmp_path, max_upload_bytes=2000), lambda: fake_engine) as server:
        with server.client() as c:
            big = json.dumps({**CT_GRAPH, "padding": "x" * 5000})
            r = c.post("/api/graphs/import", files={"file": ("g.json", big, "application/json")})
            assert r.status_code == 413 and "file" in r.json()["detail"]
            r = c.post("/api/graphs/import", content=big, headers={"content-type": "application/json"})
            assert r.status_code == 413
            # streamed without a Content-Length: cut off while reading

            def chunks():
                for _ in range(10):
                    yield b" " * 1000

            r = c.post("/api/graphs/import", content=chunks(), headers={"content-type": "application/json"})
            assert r.status_code == 413
            small = c.post("/api/graphs/import", json=CT_GRAPH)
            assert small.status_code == 201
