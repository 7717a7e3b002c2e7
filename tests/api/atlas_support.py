"""A hand-written feature atlas whose records read back whole (for tests of the feature routes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from circuitboard.atlas.store import AtlasStore, pack_examples


def small_atlas(path: Path, feats: dict[tuple[int, int], tuple[float, str]]) -> AtlasStore:
    """(layer, index) -> (frequency, auto label); no examples, an empty histogram."""
    store = AtlasStore(path, create=True)
    empty = pack_examples(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 0)))
    for layer in sorted({k[0] for k in feats}):
        rows, search_rows = [], []
        for (lay, idx), (freq, label) in sorted(feats.items()):
            if lay == layer:
                hist, logits = {"hi": 5.0, "counts": []}, {"top": [], "bottom": []}
                rows.append((lay, idx, 5.0, 1.0, freq, 10, json.dumps(hist), json.dumps(logits), "[]", empty, label))
                search_rows.append((lay, idx, 5.0, freq, label, label.lower()))
        store.put_layer(layer, rows, search_rows, seconds=0.0)
    return store
