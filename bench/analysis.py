"""Circuit analysis on a real preset (issue 13): suggested supernodes, validation by intervention, a graph diff.

    .venv/bin/python bench/analysis.py [--preset gemma-3-270m] [--max-feature-nodes 1000] [--groups 8]
                                       [--granularity 0.5] [--device cpu] [--out .bench/analysis]

1. Traces "The capital of the state containing Dallas is", suggests supernodes (graph profiles, decoder
   directions, and the atlas's labels and top tokens when `models/<preset>/atlas.sqlite` exists) and prints
   each group's label, size, layers and score (the share of the logits' influence through it).
2. Validates the best `--groups` suggestions: predicted (linear graph) against measured change of the target
   logits when each group is ablated, frozen (replacement model) and free (the model itself), and the
   circuit's sufficiency and necessity.
3. Diffs "Dallas is in the state of" (-> Texas) against "Chicago is in the state of" (-> Illinois) and prints
   the features that changed most.
Everything printed is also written as JSON to `--out/<preset>.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

PROMPT = "The capital of the state containing Dallas is"
DIFF = ("Dallas is in the state of", "Chicago is in the state of")


def _evidence(engine: Any, atlas: Any, graph: Any, nodes: list[int]) -> Any:
    from circuitboard.api.routes.analysis import atlas_evidence
    from circuitboard.engine.supernodes import Evidence

    pairs = [(layer, index) for layer, index, _ in graph.feature_coords(nodes)]
    labels, tokens = atlas_evidence(atlas, pairs) if atlas is not None else (None, None)
    return Evidence(decoder=engine.feature_directions(pairs), labels=labels, top_tokens=tokens)


def suggestions(engine: Any, atlas: Any, params: Any, granularity: float) -> tuple[dict, Any]:
    from circuitboard.engine.linkgraph import LinkGraph
    from circuitboard.engine.supernodes import SuggestRequest, candidate_nodes, suggest

    t0 = time.perf_counter()
    data = engine.attribute(PROMPT, params)
    graph = LinkGraph.from_json(data)
    t1 = time.perf_counter()
    nodes = candidate_nodes(graph, SuggestRequest())
    result = suggest(graph, nodes, _evidence(engine, atlas, graph, nodes), granularity)
    t2 = time.perf_counter()
    print(
        f"\n## Suggested supernodes: {PROMPT!r} ({len(nodes)} feature nodes; trace {t1 - t0:.1f} s, "
        f"suggest {t2 - t1:.2f} s)\n"
    )
    print("| # | label | features | layers | score |\n|---|---|---|---|---|")
    for k, (sn, score) in enumerate(zip(result.supernodes, result.scores, strict=True)):
        layers = sorted({int(nid.split("_")[0]) for nid in sn[1:]})
        print(f"| {k + 1} | {sn[0]} | {len(sn) - 1} | {layers[0]}–{layers[-1]} | {score:.3f} |")
    return data, result


def validation(engine: Any, data: dict, supernodes: list[list[str]]) -> Any:
    from circuitboard.engine.validation import ValidateRequest

    t0 = time.perf_counter()
    out = engine.validate(data, ValidateRequest(supernodes=supernodes))
    print(f"\n## Validation by intervention ({time.perf_counter() - t0:.1f} s; targets {out.targets})\n")
    print("Mean change of the target logits (probability-weighted) when the group is ablated:\n")
    print("| label | predicted | frozen | free | agrees | steer x-1 (pred / free) | x2 (pred / free) |")
    print("|---|---|---|---|---|---|---|")
    for g in out.groups:
        m = g.ablate.measured_effect
        s1, s2 = g.steer["x-1"], g.steer["x2"]
        print(
            f"| {g.label} | {g.predicted_effect:+.3f} | {m['frozen']:+.3f} | {m['free']:+.3f} | {g.agrees} | "
            f"{s1.predicted_effect:+.3f} / {s1.measured_effect['free']:+.3f} | "
            f"{s2.predicted_effect:+.3f} / {s2.measured_effect['free']:+.3f} |"
        )
    for name in ("sufficiency", "necessity"):
        e = getattr(out.circuit, name)
        m = e.measured_effect
        print(f"| circuit {name} | {e.predicted_effect:+.3f} | {m['frozen']:+.3f} | {m['free']:+.3f} | | | |")
    return out


def graph_diff(engine: Any, atlas: Any, params: Any) -> Any:
    from circuitboard.engine.diff import diff_graphs
    from circuitboard.engine.linkgraph import LinkGraph

    a, b = (LinkGraph.from_json(engine.attribute(p, params)) for p in DIFF)
    d = diff_graphs(a, b)
    print(f"\n## Graph diff: {DIFF[0]!r} vs {DIFF[1]!r}\n")
    print(f"alignment {d.alignment}; summary {d.summary.model_dump()}\n")
    feats = [n for n in d.nodes if n.feature_type == "feature"][:15]
    labels = atlas.labels_for([(n.layer, n.feature) for n in feats]) if atlas is not None else {}
    print("| feature | position (a, b) | status | activation a | activation b | label |\n|---|---|---|---|---|---|")
    for n in feats:
        acts = [f"{x:.2f}" if x is not None else "—" for x in (n.activation_a, n.activation_b)]
        label = labels.get((n.layer, n.feature), "")
        print(
            f"| {n.layer}_{n.feature} | {n.ctx_idx_a}, {n.ctx_idx_b} | {n.status} | {acts[0]} | {acts[1]} | {label} |"
        )
    for g, name in ((a, "a"), (b, "b")):
        top = sorted(g.of_kind("logit"), key=lambda i: -float(g.prob[i]))[:3]
        print(f"top logits {name}: " + ", ".join(f"{g.labels[i]}" for i in top))
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="gemma-3-270m")
    ap.add_argument("--max-feature-nodes", type=int, default=1000)
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--granularity", type=float, default=0.5)
    ap.add_argument("--device", default=None)
    ap.add_argument("--model", type=Path, help="model folder (default: the preset's)")
    ap.add_argument("--transcoders", type=Path, help="transcoder folder (default: the preset's)")
    ap.add_argument("--out", type=Path, default=ROOT / ".bench" / "analysis")
    args = ap.parse_args()

    from circuitboard.atlas.store import AtlasStore
    from circuitboard.engine.session import Engine
    from circuitboard.engine.types import AttributionParams
    from circuitboard.presets import load_preset, preset_paths

    rp = preset_paths(load_preset(args.preset))
    engine = Engine.load(args.model or rp.model_dir, args.transcoders or rp.transcoders_dir, device=args.device)
    atlas = AtlasStore(rp.atlas_path) if rp.atlas_path.is_file() and not args.model else None
    print(
        f"{args.preset}: {engine.info.n_layers} layers, d_transcoder {engine.info.d_transcoder}, "
        f"atlas {'yes' if atlas else 'no'}, device {engine.info.device}"
    )
    params = AttributionParams(max_feature_nodes=args.max_feature_nodes)
    data, suggested = suggestions(engine, atlas, params, args.granularity)
    validated = validation(engine, data, suggested.supernodes[: args.groups])
    diffed = graph_diff(engine, atlas, params)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"{args.preset}.json"
    results = {"suggest": suggested.model_dump(), "validate": validated.model_dump(), "diff": diffed.model_dump()}
    out.write_text(json.dumps(results, indent=1))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
