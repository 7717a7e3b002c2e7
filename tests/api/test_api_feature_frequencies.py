"""POST /api/features/labels also returns atlas activation frequencies (the page's feature-density filter)."""

from __future__ import annotations

import json

from fastapi import FastAPI
from fastapi.testclient import TestClient

from circuitboard.api.routes import features
from circuitboard.atlas.store import AtlasStore


def _atlas(path, feats: dict[tuple[int, int], tuple[float, str]]):
    """A hand-written atlas: (layer, index) -> (frequency, auto label); the other columns are placeholders."""
    store = AtlasStore(path, create=True)
    for layer in sorted({k[0] for k in feats}):
        rows, search_rows = [], []
        for (lay, idx), (freq, label) in sorted(feats.items()):
            if lay != layer:
                continue
            rows.append(
                (
                    lay,
                    idx,
                    5.0,
                    1.0,
                    freq,
                    10,
                    json.dumps({"hi": 5.0, "counts": []}),
                    json.dumps({"top": [], "bottom": []}),
                    "[]",
                    b"",
                    label,
                )
            )
            search_rows.append((lay, idx, 5.0, freq, label, label.lower()))
        store.put_layer(layer, rows, search_rows, seconds=0.0)
    return store


def test_labels_come_with_frequencies(tmp_path):
    path = tmp_path / "atlas.sqlite"
    feats = {(0, 3): (0.5, "always on"), (0, 7): (0.0012, "Dallas"), (2, 1000): (0.02, "Texas")}
    store = _atlas(path, feats)
    store.set_user_label(0, 7, "city of Dallas")
    app = FastAPI()
    app.include_router(features.router)
    app.state.atlas = path
    with TestClient(app) as c:
        asked = [[0, 3], [0, 7], [2, 1000], [5, 5], [0, 4]]
        r = c.post("/api/features/labels", json={"features": asked})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["labels"] == {"0_3": "always on", "0_7": "city of Dallas", "2_1000": "Texas"}
        assert body["frequencies"] == {"0_3": 0.5, "0_7": 0.0012, "2_1000": 0.02}
        # many features of one layer: chunked queries, every one found
        many = [[0, 3]] + [[9, i] for i in range(2000)]
        assert c.post("/api/features/labels", json={"features": many}).json()["frequencies"] == {"0_3": 0.5}
        too_many = c.post("/api/features/labels", json={"features": [[0, 0]] * 10_001})
        assert too_many.status_code == 422 and "features" in too_many.text


def test_labels_without_atlas_is_404(tmp_path):
    app = FastAPI()
    app.include_router(features.router)
    app.state.atlas = tmp_path / "missing.sqlite"
    with TestClient(app) as c:
        r = c.post("/api/features/labels", json={"features": [[0, 1]]})
        assert r.status_code == 404 and "atlas" in r.json()["detail"]
