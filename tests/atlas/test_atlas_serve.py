"""Search, the HTTP routes, the circuit-tracer export and LLM explanations (against a local fake server)."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from atlas_fixtures import PLANT_FEATURE, PLANT_LAYER
from fastapi import FastAPI
from fastapi.testclient import TestClient

from circuitboard.api.routes import features
from circuitboard.atlas.export import export_atlas, read_feature
from circuitboard.atlas.labels import LLMConfig, auto_label, explain
from circuitboard.atlas.records import feature_record
from circuitboard.atlas.search import search
from circuitboard.atlas.store import AtlasStore
from circuitboard.engine.export import cantor, cantor_unpair

PLANTED = (PLANT_LAYER, PLANT_FEATURE)


def test_search_finds_planted_feature(built_atlas):
    store = AtlasStore(built_atlas)
    for q in ("dallas", "Dallas", '"dallas"', "texas dallas"):
        hits = search(store, q)
        assert hits and (hits[0]["layer"], hits[0]["index"]) == PLANTED, q
    assert (search(store, f"L{PLANT_LAYER}/{PLANT_FEATURE}")[0]["index"]) == PLANT_FEATURE
    assert search(store, "zzz-no-such-token") == []
    assert search(store, "   ") == []


def test_auto_label_format():
    assert auto_label([" Texas", "x"], [(" Dallas", 10.0), (" Houston", 2.0)]) == '→ Texas · on "Dallas"'
    assert auto_label(["Texas"], [("Dallas", 10.0), ("Houston", 6.0)]) == '→ Texas · on "Dallas"/"Houston"'
    assert auto_label(["\n"], [(" ", 1.0)]) == '→ ⏎ · on "␣"'
    assert auto_label([], [], alive=False) == "dead feature"


@pytest.fixture
def client(built_atlas):
    app = FastAPI()
    app.include_router(features.router)
    app.state.atlas = built_atlas
    with TestClient(app) as c:
        yield c


def test_api_feature_label_and_search(client, built_atlas):
    r = client.get(f"/api/features/{PLANT_LAYER}/{PLANT_FEATURE}")
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["label"] == '→ texas · on "dallas"' and rec["label_source"] == "auto"
    assert rec["examples"][0]["tokens"][rec["examples"][0]["center"]] == "dallas"
    assert rec["top_logits"][0]["text"] == "texas"
    assert set(rec["histogram"]) == {"edges", "counts"}

    r = client.get("/api/features/search", params={"q": "dallas", "limit": 5})
    assert r.status_code == 200
    items = r.json()["items"]
    assert (items[0]["layer"], items[0]["index"]) == PLANTED
    assert set(items[0]) == {"layer", "index", "label", "max_act", "frequency"}

    r = client.put(f"/api/features/{PLANT_LAYER}/{PLANT_FEATURE}/label", json={"label": "Dallas → Texas"})
    assert r.status_code == 200 and r.json()["label"] == "Dallas → Texas" and r.json()["label_source"] == "user"
    assert client.get("/api/features/search", params={"q": "Dallas → Texas"}).json()["items"][0]["index"] == 5
    # persisted: a fresh store (a restarted server) sees it; an empty label restores the automatic one
    assert feature_record(AtlasStore(built_atlas), *PLANTED)["label"] == "Dallas → Texas"
    r = client.post("/api/features/labels", json={"features": [[1, 5], [0, 0], [9, 9]]})
    assert r.status_code == 200
    labels = r.json()["labels"]
    assert labels["1_5"] == "Dallas → Texas" and "0_0" in labels and "9_9" not in labels
    r = client.put(f"/api/features/{PLANT_LAYER}/{PLANT_FEATURE}/label", json={"label": ""})
    assert r.json()["label"] == '→ texas · on "dallas"'


def test_api_errors(client, tmp_path):
    r = client.get("/api/features/0/99999")
    assert r.status_code == 404 and "no feature 99999 in layer 0" in r.json()["detail"]
    r = client.get("/api/features/7/0")
    assert r.status_code == 404 and "no layer 7" in r.json()["detail"]
    r = client.get("/api/features/x/0")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "layer"]
    r = client.get("/api/features/0/-1")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "index"]
    r = client.put("/api/features/0/0/label", json={"nope": 1})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "label"]
    assert client.get("/api/features/search").status_code == 422
    r = client.post("/api/features/labels", json={"features": [[1]]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", "features"]
    assert client.put("/api/features/0/99999/label", json={"label": "x"}).status_code == 404
    r = client.post("/api/features/0/0/explain")
    assert r.status_code == 503 and "CIRCUITBOARD_LLM_BASE_URL" in r.json()["detail"]
    client.app.state.atlas = tmp_path / "missing.sqlite"
    r = client.get("/api/features/0/0")
    assert r.status_code == 404 and "no feature atlas" in r.json()["detail"]


def test_atlas_found_from_settings(built_atlas, tmp_path):
    from types import SimpleNamespace

    app = FastAPI()
    app.include_router(features.router)
    link = tmp_path / "preset" / "atlas.sqlite"
    link.parent.mkdir()
    link.symlink_to(built_atlas)
    app.state.services = SimpleNamespace(
        settings=SimpleNamespace(transcoders_path=str(tmp_path / "preset" / "tc"), preset="x", models_dir=tmp_path)
    )
    with TestClient(app) as c:
        assert c.get(f"/api/features/{PLANT_LAYER}/{PLANT_FEATURE}").status_code == 200


def test_export_round_trips(built_atlas, tmp_path):
    fdir = export_atlas(built_atlas, tmp_path / "out", json_files=True)
    with gzip.open(fdir / "index.json.gz", "rt") as fh:
        index = json.load(fh)
    assert [e["filename"] for e in index] == ["layer_0.bin", "layer_1.bin"]
    assert len(index[1]["offsets"]) == 48 + 1
    rec = feature_record(AtlasStore(built_atlas), *PLANTED)
    got = read_feature(fdir, *PLANTED)
    assert set(got) == {
        "transcoder_id",
        "index",
        "examples_quantiles",
        "top_logits",
        "bottom_logits",
        "act_min",
        "act_max",
        "quantile_values",
        "histogram",
        "activation_frequency",
    }
    assert got["index"] == PLANT_FEATURE and got["act_max"] == pytest.approx(rec["max_act"])
    assert got["top_logits"][0] == "texas"
    top = got["examples_quantiles"][0]
    assert top["quantile_name"] == "Top activations"
    assert [e["tokens"] for e in top["examples"]] == [e["tokens"] for e in rec["examples"]]
    assert [e["tokens_acts_list"] for e in top["examples"]] == [e["acts"] for e in rec["examples"]]
    ex = top["examples"][0]
    assert ex["tokens"][ex["train_token_ind"]] == "dallas"
    assert sum(got["histogram"]) == pytest.approx(rec["n_active"], rel=1e-3)
    assert got["activation_frequency"] == pytest.approx(rec["frequency"])
    # the per-feature JSON file variant holds the same object, named by the viewer's cantor id
    assert json.loads((fdir / f"{cantor(*PLANTED)}.json").read_text()) == got
    for z in (0, 1, 17, cantor(17, 4095), cantor(25, 16383)):
        assert cantor(*cantor_unpair(z)) == z


class _FakeLLM(BaseHTTPRequestHandler):
    calls: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _FakeLLM.calls.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": " The city Dallas. "}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out.encode())

    def log_message(self, *args):
        pass


def test_llm_explanation_cached(built_atlas, monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _FakeLLM)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        cfg = LLMConfig(base_url=f"http://127.0.0.1:{server.server_port}/v1", model="fake", api_key="k")
        store = AtlasStore(built_atlas)
        assert explain(store, *PLANTED, cfg) == "The city Dallas."
        assert explain(store, *PLANTED, cfg) == "The city Dallas."  # cached: one call only
        assert len(_FakeLLM.calls) == 1
        call = _FakeLLM.calls[0]
        assert call["path"] == "/v1/chat/completions" and call["auth"] == "Bearer k"
        assert "«dallas»" in call["body"]["messages"][1]["content"]
        assert feature_record(store, *PLANTED)["explanation"] == "The city Dallas."
        # through the API, configured by env
        monkeypatch.setenv("CIRCUITBOARD_LLM_BASE_URL", cfg.base_url)
        monkeypatch.setenv("CIRCUITBOARD_LLM_MODEL", "fake2")
        app = FastAPI()
        app.include_router(features.router)
        app.state.atlas = built_atlas
        with TestClient(app) as c:
            r = c.post(f"/api/features/{PLANT_LAYER}/{PLANT_FEATURE}/explain")
            assert r.status_code == 200 and r.json()["explanation"] == "The city Dallas."
        assert len(_FakeLLM.calls) == 2
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.delenv("CIRCUITBOARD_LLM_BASE_URL")
    assert explain(store, *PLANTED) is None  # nothing configured: no explanation, no network
