"""Decode one stored feature into the record the API serves (docs/api.md, features rows)."""

from __future__ import annotations

import json

import numpy as np

from circuitboard.atlas.store import AtlasStore, unpack_examples

N_QUANTILES = 100  # quantile_values[i] = the (i+1)-th percentile of nonzero activations (their viewer's use)


def histogram(hist: dict) -> dict:
    counts = list(hist.get("counts", []))
    hi = float(hist.get("hi", 0.0))
    width = hi / int(hist.get("nb", 64)) if hi > 0 else 0.0
    edges = [round(width * i, 6) for i in range(len(counts) + 1)]
    return {"edges": edges, "counts": counts}


def quantile_values(hist: dict, n: int = N_QUANTILES) -> list[float]:
    """Percentiles of nonzero activations from the stored histogram (linear inside a bin)."""
    counts = np.asarray(hist.get("counts", []), dtype=np.float64)
    if counts.sum() <= 0:
        return []
    width = float(hist["hi"]) / int(hist.get("nb", 64))
    cdf = np.concatenate([[0.0], np.cumsum(counts)]) / counts.sum()
    edges = np.arange(counts.size + 1) * width
    qs = np.arange(1, n + 1) / n
    return [round(float(v), 6) for v in np.interp(qs, cdf, edges)]


def _examples(store: AtlasStore, blob: bytes, window: tuple[int, int]) -> tuple[list[dict], list[dict]]:
    ex = unpack_examples(blob)
    before, after = window
    top: list[dict] = []
    bands: dict[int, list[dict]] = {}
    seqs = {int(s): store.sequence(int(s)) for s in set(ex.seq.tolist())}
    needed = set()
    spans = []
    for j in range(ex.group.size):
        toks = seqs[int(ex.seq[j])]
        pos = int(ex.pos[j])
        start = max(pos - before, 0)
        end = min(pos + after, len(toks) - 1)
        ids = toks[start : end + 1].tolist()
        needed.update(ids)
        spans.append((start, pos, ids))
    text = dict(zip(sorted(needed), store.vocab_text(sorted(needed)), strict=True))
    for j, (start, pos, ids) in enumerate(spans):
        acts = [round(float(a), 4) for a in ex.acts[j, : len(ids)]]
        rec = {
            "tokens": [text[i] for i in ids],
            "token_ids": ids,
            "acts": acts,
            "max_act": max(acts) if acts else 0.0,
            "center": pos - start,
            "seq": int(ex.seq[j]),
            "position": pos,
        }
        g = int(ex.group[j])
        (top if g == 0 else bands.setdefault(g, [])).append(rec)
    quantile_examples = []
    for g in sorted(bands):
        exs = bands[g]
        lo = min(e["acts"][e["center"]] for e in exs)
        hi = max(e["acts"][e["center"]] for e in exs)
        quantile_examples.append({"name": f"Interval {g} ({hi:.3g} to {lo:.3g})", "examples": exs})
    return top, quantile_examples


def feature_record(store: AtlasStore, layer: int, index: int) -> dict | None:
    raw = store.raw_feature(layer, index)
    return None if raw is None else record_from_raw(store, raw)


def record_from_raw(store: AtlasStore, raw: dict) -> dict:
    layer, index = raw["layer"], raw["idx"]
    window = tuple(store.get_meta("window", [12, 4]))
    logits = json.loads(raw["logits"])
    inputs = json.loads(raw["inputs"])
    ids = [t for t, _ in logits["top"]] + [t for t, _ in logits["bottom"]] + [t for t, _, _ in inputs]
    text = dict(zip(ids, store.vocab_text(ids), strict=True))
    hist = json.loads(raw["hist"])
    examples, quantile_examples = _examples(store, raw["examples"], window)
    label = raw["user_label"] or raw["auto_label"]
    return {
        "layer": layer,
        "index": index,
        "label": label,
        "label_source": "user" if raw["user_label"] else "auto",
        "auto_label": raw["auto_label"],
        "explanation": raw["explanation"],
        "max_act": raw["max_act"],
        "mean_act": raw["mean_act"],
        "frequency": raw["frequency"],
        "n_active": raw["n_active"],
        "histogram": histogram(hist),
        "quantile_values": quantile_values(hist),
        "top_logits": [{"id": t, "text": text[t], "value": v} for t, v in logits["top"]],
        "bottom_logits": [{"id": t, "text": text[t], "value": v} for t, v in logits["bottom"]],
        "top_input_tokens": [
            {"id": t, "text": text[t], "value": s, "count": c, "mean": round(s / max(c, 1), 5)} for t, s, c in inputs
        ],
        "examples": examples,
        "quantile_examples": quantile_examples,
    }
