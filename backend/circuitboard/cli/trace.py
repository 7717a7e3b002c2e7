"""CLI: `circuitboard trace`, `circuitboard intervene`, `circuitboard tiny-model`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace",
        help="compute the attribution graph of a prompt",
        description="Compute, prune and export the attribution graph of PROMPT.",
    )
    p.add_argument("prompt")
    _model_args(p)
    p.add_argument("--max-feature-nodes", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-n-logits", type=int, default=10)
    p.add_argument("--desired-logit-prob", type=float, default=0.95)
    p.add_argument("--node-threshold", type=float, default=0.8)
    p.add_argument("--edge-threshold", type=float, default=0.98)
    p.add_argument("--target", action="append", dest="target_tokens", help="a target token (repeatable)")
    p.add_argument("--logit-diff", nargs=2, metavar=("A", "B"), help="one target: logit(A) - logit(B)")
    p.add_argument("--slug", default=None)
    p.add_argument("--out", type=Path, default=None, help="graph JSON (circuit-tracer schema); default stdout")
    p.add_argument("--raw", type=Path, default=None, help="unpruned adjacency (rows = targets) + node_ids, .npz")
    p.set_defaults(func=_trace)

    p = sub.add_parser(
        "intervene",
        help="set, scale or zero features and compare outputs",
        description="Feature spec: LAYER:FEATURE[@POS]=VALUE (set), LAYER:FEATURE[@POS]*=F (scale), "
        "LAYER:FEATURE[@POS]=0 or LAYER:FEATURE[@POS]:zero (ablate). Without @POS: "
        "every position, generated ones included.",
    )
    p.add_argument("prompt")
    _model_args(p)
    p.add_argument("--feature", action="append", dest="features", default=[], metavar="SPEC")
    p.add_argument("--freeze-attention", action="store_true")
    p.add_argument("--n-tokens", type=int, default=10)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_intervene)

    p = sub.add_parser("tiny-model", help="write a tiny random model + transcoders (tests, demos)")
    p.add_argument("out", type=Path)
    p.add_argument("--arch", default="llama")
    p.add_argument("--kind", default="relu", choices=["relu", "jumprelu", "topk"])
    p.add_argument("--clt", action="store_true")
    p.add_argument("--skip", action="store_true")
    p.set_defaults(func=_tiny)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="preset name, local model folder, .gguf file or hub id")
    p.add_argument("--transcoders", default=None, help="transcoder folder or config.yaml (default: the preset's)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])


def _load_engine(args):
    from circuitboard.engine.session import Engine

    model, transcoders = args.model, args.transcoders
    if not Path(model).exists() and transcoders is None:
        from circuitboard.presets import resolve_preset  # a preset name

        resolved = resolve_preset(model)
        model, transcoders = resolved.model_dir, resolved.transcoders_dir
    if transcoders is None:
        raise SystemExit("error: --transcoders is required with a model path")
    print(f"loading {model} with transcoders {transcoders}", file=sys.stderr)
    return Engine.load(model, transcoders, device=args.device, dtype=args.dtype)


class _Bar:
    """One tqdm bar per phase, on stderr."""

    def __init__(self):
        self.bar, self.phase = None, None

    def __call__(self, ev):
        from tqdm import tqdm

        if ev.phase != self.phase:
            self.close()
            self.phase = ev.phase
            self.bar = tqdm(total=ev.total, desc=ev.phase, unit="row", file=sys.stderr)
        self.bar.total = ev.total
        self.bar.n = ev.done
        self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _trace(args) -> int:
    from circuitboard.engine.types import AttributionParams

    engine = _load_engine(args)
    params = AttributionParams(
        max_feature_nodes=args.max_feature_nodes,
        batch_size=args.batch_size,
        max_n_logits=args.max_n_logits,
        desired_logit_prob=args.desired_logit_prob,
        node_threshold=args.node_threshold,
        edge_threshold=args.edge_threshold,
        target_tokens=args.target_tokens,
        logit_diff=tuple(args.logit_diff) if args.logit_diff else None,
        slug=args.slug,
    )
    bar = _Bar()
    graph = engine.attribute_graph(args.prompt, params, progress=bar)
    data = engine.export(graph, params, progress=bar)
    bar.close()
    if args.raw:
        import numpy as np

        np.savez_compressed(args.raw, adjacency=graph.adjacency_matrix.numpy(), node_ids=np.array(graph.node_ids()))
    text = json.dumps(data)
    if args.out:
        args.out.write_text(text)
        info = data["metadata"]["info"]
        print(
            f"wrote {args.out}: {len(data['nodes'])} nodes, {len(data['links'])} links, "
            f"replacement {info['replacement_score']:.3f}, completeness {info['completeness_score']:.3f}, "
            f"{info['timings']['total_s']:.2f}s",
            file=sys.stderr,
        )
    else:
        sys.stdout.write(text + "\n")
    return 0


def parse_feature_spec(spec: str):
    """`L:F[@P]=V`, `L:F[@P]*=S`, `L:F[@P]:zero` → FeatureIntervention."""
    from circuitboard.engine.types import FeatureIntervention

    mode, value = "set", 0.0
    if spec.endswith(":zero"):
        head, mode = spec[: -len(":zero")], "zero"
    elif "*=" in spec:
        head, v = spec.split("*=", 1)
        mode, value = "scale", float(v)
    elif "=" in spec:
        head, v = spec.split("=", 1)
        value = float(v)
    else:
        raise ValueError(f"--feature {spec!r}: expected LAYER:FEATURE[@POS]=VALUE, *=FACTOR or :zero")
    head, _, pos = head.partition("@")
    layer, _, feature = head.partition(":")
    return FeatureIntervention(
        layer=int(layer), feature=int(feature), position=int(pos) if pos else None, mode=mode, value=value
    )


def _intervene(args) -> int:
    from circuitboard.engine.types import InterventionRequest

    try:
        items = [parse_feature_spec(s) for s in args.features]
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    engine = _load_engine(args)
    result = engine.intervene(
        InterventionRequest(
            prompt=args.prompt,
            interventions=items,
            freeze_attention=args.freeze_attention,
            n_tokens=args.n_tokens,
            top_k=args.top_k,
            temperature=args.temperature,
            seed=args.seed,
        )
    )
    for name, outcome in (("before", result.before), ("after", result.after)):
        tops = ", ".join(f"{t.text!r} {t.prob:.3f}" for t in outcome.top)
        print(f"{name:>6}: {tops}\n        continuation: {outcome.continuation!r}")
    return 0


def _tiny(args) -> int:
    from circuitboard.devtools.tiny import build_tiny_checkpoint

    model_dir, tc_dir = build_tiny_checkpoint(args.out, args.arch, kind=args.kind, cross_layer=args.clt, skip=args.skip)
    print(f"model: {model_dir}\ntranscoders: {tc_dir}")
    return 0
