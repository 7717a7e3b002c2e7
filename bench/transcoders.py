"""Transcoder quality: per-layer held-out explained variance, L0 and dead fraction, and graph scores.

    .venv/bin/python bench/transcoders.py [--preset gemma-3-270m] [--recompute] [--no-graphs]
    .venv/bin/python bench/transcoders.py --compare [--sets "PLT default=DIR,CLT=DIR"] [--prompts bench/prompts.yaml]

Without `--compare`: reads `models/<preset>/transcoders/metrics.json` (written by training); `--recompute`
measures EV / NMSE / L0 / dead again through the engine's loader on the activation cache's held-out split (an
independent check of the saved, scale-folded weights), and it traces graphs of three fixed prompts. Targets
(issue 4): mean EV >= 0.72, no layer < 0.55, L0 <= 64, dead < 10%.

`--compare` (issue 17) measures every set of `--sets` (default: the preset's `transcoders`, `transcoders-noskip`,
`transcoders-clt` and `transcoders-large`, those that exist) the same way, through the files: held-out EV and
NMSE per layer, L0, dead fraction, the KL of the replacement model's next-token distribution on the prompt set,
the mean and lowest replacement and completeness scores of the prompt set's graphs (engine defaults:
`--max-feature-nodes` 2000), the training time from metrics.json and, for a set with an atlas, the label-quality
proxies (`quality.label_quality`). `--json FILE` keeps the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
sys.path.insert(0, str(ROOT / "bench"))

PROMPTS = ["Dallas is in the state of", "The opposite of hot is", "Michael Jordan plays the sport of"]
TARGETS = {"mean_ev": 0.72, "min_ev": 0.55, "l0": 64, "dead": 0.10}
COMPARED = {"PLT default": "transcoders", "PLT no skip": "transcoders-noskip", "CLT": "transcoders-clt",
            "large": "transcoders-large"}  # fmt: skip


def recompute(tdir: Path, cache_dir: Path, n_seqs: int = 400) -> dict[int, dict]:
    from circuitboard.engine.transcoders import load_transcoder_set
    from quality import heldout_metrics

    rows = heldout_metrics(load_transcoder_set(tdir, lazy_decoder=False), cache_dir, n_seqs)[:-1]
    return dict(enumerate(rows))


def print_layers(rows: dict[int, dict], title: str) -> None:
    print(f"\n{title}")
    print(f"{'layer':>5} {'EV':>7} {'skip EV':>8} {'NMSE':>7} {'L0':>6} {'dead %':>7}")
    for layer in sorted(rows):
        r = rows[layer]
        skip, nmse = r.get("explained_variance_skip_only"), r.get("nmse")
        print(
            f"{layer:>5} {r['explained_variance']:7.3f} {'' if skip is None else f'{skip:8.3f}':>8} "
            f"{'' if nmse is None else f'{nmse:7.3f}':>7} {r['l0']:6.1f} {100 * r['dead_fraction']:7.1f}"
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
    from circuitboard.engine.session import Engine
    from circuitboard.engine.types import AttributionParams

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


# ------------------------------------------------------------------------------------------------ --compare


def training_seconds(tdir: Path) -> float | None:
    mp = tdir / "metrics.json"
    if not mp.exists():
        return None
    m = json.loads(mp.read_text())
    s = m.get("summary", {})
    return s.get("train_seconds") or sum(r.get("seconds", 0.0) for r in m.get("layers", {}).values()) or None


def measure_set(name: str, tdir: Path, args: argparse.Namespace, prompts: list[str]) -> dict:
    """Every figure of one set (see the module docstring)."""
    import quality
    from circuitboard.engine.session import Engine

    t0 = time.perf_counter()
    engine = Engine.load(model=str(args.model), transcoders=str(tdir), device="cpu")
    engine.tset.materialize()
    layers = _timed("held-out metrics", quality.heldout_metrics, engine.tset, args.cache, args.heldout_seqs)
    kl = _timed("replacement KL", quality.replacement_kl, engine, prompts)
    scores = _timed("graphs", quality.graph_scores, engine, prompts, args.max_feature_nodes)
    atlas = tdir / "atlas.sqlite"  # a set's own atlas, or the preset's for the set it was built from
    atlas = atlas if atlas.exists() or name != args.atlas_set else tdir.parent / "atlas.sqlite"
    labels = _timed("label quality", quality.label_quality, atlas, args.cache, engine.tset)
    info = engine.info
    return {
        "name": name, "path": str(tdir), "kind": "clt" if info.cross_layer else "plt", "width": info.d_transcoder,
        "activation": engine.tset.layers[0].activation.kind, "skip": engine.tset.has_skip,
        "layers": layers[:-1], "heldout_tokens": layers[-1]["tokens"], "kl": kl, "graphs": scores,
        "train_seconds": training_seconds(tdir), "labels": labels, "bench_seconds": time.perf_counter() - t0,
    }  # fmt: skip


def _timed(what: str, fn: Callable[..., Any], *a: Any) -> Any:
    t0 = time.perf_counter()
    out = fn(*a)
    print(f"  {what}: {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def print_comparison(results: list[dict]) -> None:
    n_layers = len(results[0]["layers"])
    for what, key in (("held-out EV", "explained_variance"), ("held-out NMSE", "nmse")):
        print(f"\n{what} per layer")
        print(f"{'set':<14} " + " ".join(f"{i:>5}" for i in range(n_layers)))
        for r in results:
            print(f"{r['name']:<14} " + " ".join(_short(row[key]) for row in r["layers"]))
    print(
        f"\n{'set':<14} {'kind':<18} {'width':>5} {'EV':>6} {'min EV':>6} {'NMSE':>6} {'L0':>6} {'dead %':>6} "
        f"{'KL':>6} {'repl.':>6} {'lowest':>6} {'compl.':>6} {'lowest':>6} {'train':>7}"
    )
    for r in results:
        ev = [row["explained_variance"] for row in r["layers"]]
        rep = [g["replacement"] for g in r["graphs"]]
        comp = [g["completeness"] for g in r["graphs"]]
        kind = f"{r['kind']} {r['activation']}{' +skip' if r['skip'] else ''}"
        train = "–" if r["train_seconds"] is None else f"{r['train_seconds'] / 60:5.1f} m"
        print(
            f"{r['name']:<14} {kind:<18} {r['width']:>5} {statistics.mean(ev):6.3f} {min(ev):6.3f} "
            f"{statistics.mean(row['nmse'] for row in r['layers']):6.3f} "
            f"{statistics.mean(row['l0'] for row in r['layers']):6.1f} "
            f"{100 * statistics.mean(row['dead_fraction'] for row in r['layers']):6.1f} {r['kl']:6.3f} "
            f"{statistics.mean(rep):6.3f} {min(rep):6.3f} {statistics.mean(comp):6.3f} {min(comp):6.3f} {train:>7}"
        )
    for r in results:
        if r["labels"]:
            print_label_quality(r["name"], r["labels"])


def print_label_quality(name: str, lq: dict) -> None:
    """The label-quality proxies by depth: the share of a feature's held-out activation mass on the input tokens
    its label names, and of its top decoder-logit mass on the output tokens it names: the label rule before issue 17
    (one or two input tokens, the top output token) | `atlas.labels.describe`'s."""
    print(f"\nlabel quality of {name} (mean over live features; old label rule | `describe`)")
    print(f"{'layers':<8} {'features':>8} {'input share':>15} {'output share':>15}")
    for group, g in lq.items():
        print(f"{group:<8} {g['features']:>8} {g['read_old']:7.3f} {g['read_new']:7.3f} "
              f"{g['write_old']:7.3f} {g['write_new']:7.3f}")  # fmt: skip


def _short(v: float) -> str:
    """.987 for 0.987 (a 5-wide column of per-layer figures); -0.12, 1.50 as they are."""
    return (f"{v:.3f}"[1:] if 0 <= v < 1 else f"{v:.2f}").rjust(5)


def parse_sets(spec: str | None, root: Path) -> dict[str, Path]:
    if spec:
        return {k.strip(): Path(v.strip()) for k, v in (item.split("=", 1) for item in spec.split(","))}
    return {name: root / folder for name, folder in COMPARED.items()}


def compare(args: argparse.Namespace) -> int:
    root = args.models_dir / args.preset
    args.model = args.model or root / "model"
    args.cache = args.cache or root / "activations"
    prompts = [p["prompt"] for p in yaml.safe_load(args.prompts.read_text())["prompts"]][: args.limit]
    results = []
    for name, tdir in parse_sets(args.sets, root).items():
        if not (tdir / "config.yaml").exists():
            print(f"{name}: no set at {tdir}; skipped")
            continue
        print(f"== {name} ({tdir})", flush=True)
        results.append(measure_set(name, tdir, args, prompts))
    if not results:
        return 1
    print(f"\n{len(prompts)} prompts ({args.prompts}), max_feature_nodes {args.max_feature_nodes}, "
          f"{results[0]['heldout_tokens']} held-out tokens")  # fmt: skip
    print_comparison(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="gemma-3-270m")
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--transcoders", type=Path, help="a transcoder folder (default: the preset's)")
    ap.add_argument("--recompute", action="store_true")
    ap.add_argument("--no-graphs", action="store_true")
    ap.add_argument("--compare", action="store_true", help="measure several sets side by side (issue 17)")
    ap.add_argument("--sets", help='"NAME=DIR,NAME=DIR" (default: the preset\'s sets that exist)')
    ap.add_argument("--model", type=Path, help="--compare: model folder (default: the preset's)")
    ap.add_argument("--cache", type=Path, help="--compare: activation cache (default: the preset's)")
    ap.add_argument("--prompts", type=Path, default=ROOT / "bench" / "prompts.yaml")
    ap.add_argument("--limit", type=int, help="--compare: only the first N prompts")
    ap.add_argument("--max-feature-nodes", type=int, default=2000)
    ap.add_argument("--heldout-seqs", type=int, default=400)
    ap.add_argument("--atlas-set", default="PLT default", help="the set the preset's atlas.sqlite was built from")
    ap.add_argument("--json", type=Path, help="--compare: write the figures here")
    args = ap.parse_args(argv)
    if args.compare:
        return compare(args)
    root = args.models_dir / args.preset
    tdir = args.transcoders or root / "transcoders"
    mp = tdir / "metrics.json"
    if not mp.exists():
        print(f"no {mp}: train first (circuitboard prepare --preset {args.preset})")
        return 1
    metrics = json.loads(mp.read_text())
    rows = {int(k): v for k, v in metrics["layers"].items()}
    print(
        f"transcoders {tdir} (budget {metrics.get('budget')}, {metrics.get('kind', 'plt')}, width "
        f"{metrics['config']['width']}, k {metrics['config']['k']}, {metrics['config']['steps_tokens']} tokens/layer, "
        f"{metrics['cache']['train_tokens']} unique train tokens, "
        f"{metrics['cache']['heldout_tokens']} held-out tokens, computed in {metrics.get('compute_dtype', '?')})"
    )
    print_layers(rows, "training metrics (held-out text)")
    total = training_seconds(tdir) or 0.0
    print(f"training time: {total / 60:.1f} min")
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
