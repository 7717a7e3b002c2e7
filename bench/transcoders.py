"""Transcoder quality: per-layer held-out explained variance, L0 and dead fraction, and graph scores.

    .venv/bin/python bench/transcoders.py [--preset gemma-3-270m] [--recompute] [--no-graphs]

Reads `models/<preset>/transcoders/metrics.json` (written by training). `--recompute` measures EV / L0 /
dead again through the engine's loader on the activation cache's held-out split (an independent check of
the saved, scale-folded weights). With the engine's session available, it also traces graphs for a fixed
set of prompts and prints their replacement and completeness scores. Targets (issue 4): mean EV >= 0.72,
no layer < 0.55, L0 <= 64, dead < 10%.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

PROMPTS = ["Dallas is in the state of", "The opposite of hot is", "Michael Jordan plays the sport of"]
TARGETS = {"mean_ev": 0.72, "min_ev": 0.55, "l0": 64, "dead": 0.10}


def recompute(tdir: Path, cache_dir: Path, n_seqs: int = 400) -> dict[int, dict]:
    import torch

    from circuitboard.data.activations import load_rows, read_manifest
    from circuitboard.engine.transcoders import load_transcoder_set

    m = read_manifest(cache_dir)
    h0, h1 = m["split"]["heldout"]
    ts = load_transcoder_set(tdir, lazy_decoder=False)
    out = {}
    for layer, lw in enumerate(ts.layers):
        x = load_rows(cache_dir, layer, "in", (h0, min(h1, h0 + n_seqs)), m).float()
        y = load_rows(cache_dir, layer, "out", (h0, min(h1, h0 + n_seqs)), m).float()
        with torch.no_grad():
            acts = lw.activation(x @ lw.W_enc.T + lw.b_enc)
            yh = acts @ lw.W_dec + lw.b_dec + (x @ lw.W_skip.T if lw.W_skip is not None else 0)
        out[layer] = {
            "explained_variance": 1 - ((y - yh).pow(2).sum() / (y - y.mean(0)).pow(2).sum()).item(),
            "l0": (acts > 0).sum(1).float().mean().item(),
            "dead_fraction": 1 - (acts > 0).any(0).float().mean().item(),
        }
    return out


def print_layers(rows: dict[int, dict], title: str) -> None:
    print(f"\n{title}")
    print(f"{'layer':>5} {'EV':>7} {'skip EV':>8} {'L0':>6} {'dead %':>7}")
    for layer in sorted(rows):
        r = rows[layer]
        skip = r.get("explained_variance_skip_only")
        print(
            f"{layer:>5} {r['explained_variance']:7.3f} {'' if skip is None else f'{skip:8.3f}':>8} "
            f"{r['l0']:6.1f} {100 * r['dead_fraction']:7.1f}"
        )
    evs = [r["explained_variance"] for r in rows.values()]
    mean_ev, min_ev = sum(evs) / len(evs), min(evs)
    max_l0 = max(r["l0"] for r in rows.values())
    max_dead = max(r["dead_fraction"] for r in rows.values())
    print(
        f"mean EV {mean_ev:.3f} (target {TARGETS['mean_ev']}, ratio {mean_ev / TARGETS['mean_ev']:.2f}); "
        f"min EV {min_ev:.3f} (target {TARGETS['min_ev']}); max L0 {max_l0:.1f} (<= {TARGETS['l0']}); "
        f"max dead {100 * max_dead:.1f}% (< {100 * TARGETS['dead']:.0f}%)"
    )


def graphs(model_dir: Path, tdir: Path) -> None:
    try:
        from circuitboard.engine.session import Engine
        from circuitboard.engine.types import AttributionParams
    except ImportError as e:
        print(f"\ngraph scores: engine session not available ({e}); skipped")
        return
    t0 = time.perf_counter()
    engine = Engine.load(model=str(model_dir), transcoders=str(tdir))
    print(f"\nengine loaded in {time.perf_counter() - t0:.1f} s")
    print(f"{'prompt':<40} {'replacement':>11} {'completeness':>12} {'nodes':>6} {'seconds':>8}  top token")
    for prompt in PROMPTS:
        t0 = time.perf_counter()
        g = engine.attribute(prompt, AttributionParams(max_feature_nodes=500, batch_size=64))
        info = g["metadata"].get("info", {})
        top = engine.tokenize(prompt, top_k=1).top_next[0]
        print(
            f"{prompt:<40} {info.get('replacement_score', float('nan')):11.3f} "
            f"{info.get('completeness_score', float('nan')):12.3f} {len(g['nodes']):6d} "
            f"{time.perf_counter() - t0:8.1f}  {top.text!r} {top.prob:.2f}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="gemma-3-270m")
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--transcoders", type=Path, help="a transcoder folder (default: the preset's)")
    ap.add_argument("--recompute", action="store_true")
    ap.add_argument("--no-graphs", action="store_true")
    args = ap.parse_args()
    root = args.models_dir / args.preset
    tdir = args.transcoders or root / "transcoders"
    mp = tdir / "metrics.json"
    if not mp.exists():
        print(f"no {mp}: train first (circuitboard prepare --preset {args.preset})")
        return 1
    metrics = json.loads(mp.read_text())
    rows = {int(k): v for k, v in metrics["layers"].items()}
    print(
        f"transcoders {tdir} (budget {metrics.get('budget')}, width {metrics['config']['width']}, "
        f"k {metrics['config']['k']}, {metrics['config']['steps_tokens']} tokens/layer, "
        f"{metrics['cache']['train_tokens']} unique train tokens, "
        f"{metrics['cache']['heldout_tokens']} held-out tokens, computed in {metrics.get('compute_dtype', '?')})"
    )
    print_layers(rows, "training metrics (held-out text)")
    total = sum(r.get("seconds", 0) for r in rows.values())
    print(f"training time (sum over layers): {total / 60:.1f} min")
    prep = root / "prepare.json"
    if prep.exists():
        print("prepare steps (s): " + json.dumps(json.loads(prep.read_text())["seconds"]))
    if args.recompute:
        print_layers(recompute(tdir, root / "activations"), "recomputed through the engine loader (raw activations)")
    if not args.no_graphs:
        graphs(root / "model", tdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
