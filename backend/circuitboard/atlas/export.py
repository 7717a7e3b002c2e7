"""Export the atlas in circuit-tracer's feature format, so their viewer can show our features.

Layout (what their `init-feature-examples.js` reads; see ../shared/reference/circuit-tracer.md §5):
    <out>/features/index.json.gz         gzip JSON list, one entry per layer: {"filename", "offsets"}
    <out>/features/layer_{i}.bin         records back to back: 4-byte little-endian length + zlib(JSON)
    <out>/features/{cantor(l, i)}.json   optional one-file-per-feature variant (`json_files=True`)
`offsets` has n_features + 1 entries: feature i is bytes [offsets[i], offsets[i+1]) of its layer file. Their
viewer addresses a feature by `cantor(layer, index)` (the graph JSON's `feature` field, circuitboard.engine.export)
and un-pairs it.
"""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from pathlib import Path

import numpy as np

from circuitboard.atlas.records import record_from_raw
from circuitboard.atlas.store import AtlasStore
from circuitboard.engine.export import cantor

N_HIST_BINS = 32


def _rebin(hist: dict, act_max: float, n: int = N_HIST_BINS) -> list[float]:
    """Our bins cover [0, 2^e]; their viewer assumes equal bins over [act_min, act_max] = [0, max]."""
    counts = np.asarray(hist["counts"], dtype=np.float64)
    edges = np.asarray(hist["edges"], dtype=np.float64)
    if counts.sum() <= 0 or act_max <= 0:
        return [0.0] * n
    cdf = np.concatenate([[0.0], np.cumsum(counts)])
    new = np.interp(np.linspace(0.0, act_max, n + 1), edges, cdf)
    new[-1] = cdf[-1]  # max lies inside our last bin: the part of that bin above it is still <= max
    return [round(float(c), 3) for c in np.diff(new)]


def to_circuit_tracer(record: dict, transcoder_id: str) -> dict:
    """One feature record (our API shape) as circuit-tracer's `feature_models.Model`."""

    def ex(e: dict) -> dict:
        return {
            "tokens_acts_list": e["acts"],
            "train_token_ind": e["center"],
            "is_repeated_datapoint": False,
            "tokens": e["tokens"],
        }

    quantiles = [{"quantile_name": "Top activations", "examples": [ex(e) for e in record["examples"]]}]
    quantiles += [
        {"quantile_name": q["name"], "examples": [ex(e) for e in q["examples"]]} for q in record["quantile_examples"]
    ]
    return {
        "transcoder_id": transcoder_id,
        "index": record["index"],
        "examples_quantiles": quantiles,
        "top_logits": [t["text"] for t in record["top_logits"]],
        "bottom_logits": [t["text"] for t in record["bottom_logits"]],
        "act_min": 0.0,
        "act_max": record["max_act"],
        "quantile_values": record["quantile_values"],
        "histogram": _rebin(record["histogram"], record["max_act"]),
        "activation_frequency": record["frequency"],
    }


def encode_record(obj: dict) -> bytes:
    payload = zlib.compress(json.dumps(obj, separators=(",", ":")).encode(), 6)
    return struct.pack("<I", len(payload)) + payload


def decode_record(data: bytes) -> dict:
    (n,) = struct.unpack("<I", data[:4])
    return json.loads(zlib.decompress(data[4 : 4 + n]))


def export_atlas(
    atlas_path: str | Path,
    out_dir: str | Path,
    transcoder_name: str | None = None,
    json_files: bool = False,
    progress: bool = False,
) -> Path:
    """Write `<out_dir>/features/` and return it."""
    store = AtlasStore(atlas_path)
    name = transcoder_name or Path(str(store.get_meta("transcoders", "transcoders"))).name
    fdir = Path(out_dir) / "features"
    fdir.mkdir(parents=True, exist_ok=True)
    layers = sorted(store.layer_sizes())
    # a list indexed by layer (their viewer does index[layer]); layers not built stay empty
    index: list[dict] = [{"filename": None, "offsets": []} for _ in range(max(layers, default=-1) + 1)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=store.n_features(), unit="feat", desc="export")
    for layer in layers:
        filename = f"layer_{layer}.bin"
        offsets = [0]
        with open(fdir / filename, "wb") as fh:
            for raw in store.iter_layer(layer):
                obj = to_circuit_tracer(record_from_raw(store, raw), f"{name}/{layer}")
                rec = encode_record(obj)
                fh.write(rec)
                offsets.append(offsets[-1] + len(rec))
                if json_files:
                    (fdir / f"{cantor(layer, raw['idx'])}.json").write_text(json.dumps(obj))
                if bar is not None:
                    bar.update(1)
        index[layer] = {"filename": filename, "offsets": offsets}
    with gzip.open(fdir / "index.json.gz", "wt") as fh:
        json.dump(index, fh)
    if bar is not None:
        bar.close()
    return fdir


def read_feature(features_dir: str | Path, layer: int, index: int) -> dict:
    """Read one feature back the way their viewer does (index, then a byte range of the layer file)."""
    fdir = Path(features_dir)
    with gzip.open(fdir / "index.json.gz", "rt") as fh:
        entry = json.load(fh)[layer]
    start, end = entry["offsets"][index], entry["offsets"][index + 1]
    with open(fdir / entry["filename"], "rb") as fh:
        fh.seek(start)
        return decode_record(fh.read(end - start))
