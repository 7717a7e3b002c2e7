"""CLI: `circuitboard trace`, `circuitboard intervene`, `circuitboard tiny-model`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from circuitboard.cli import loaded
from circuitboard.engine.types import (
    AttributionParams,
    FeatureIntervention,
    InterventionMode,
    InterventionRequest,
    OutOfRange,
    ProgressEvent,
    param_ranges,
)

if TYPE_CHECKING:
    from circuitboard.engine.session import Engine


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace",
        help="compute the attribution graph of a prompt",
        description="Compute, prune and export the attribution graph of PROMPT.",
    )
    p.add_argument("prompt")
    _model_args(p)
    _param_args(p)
    p.add_argument("--target", action="append", dest="target_tokens", help="a target token (repeatable)")
    p.add_argument("--logit-diff", nargs=2, metavar=("A", "B"), help="one target: logit(A) - logit(B)")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "auto"],
        help="matmuls of the backward in bf16 (opt-in; fast on GPUs and AMX CPUs), or auto: bf16 where this "
        "machine computes it fast (default fp32, exact)",
    )
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


# The numeric attribution parameters (the ranged ones and the batch size) become flags; the rest are below.
_NUMERIC = {
    n: int if f.annotation is int else float
    for n, f in AttributionParams.model_fields.items()
    if f.annotation in (int, float)
}


def _param_args(p: argparse.ArgumentParser) -> None:
    """One flag per numeric attribution parameter, typed, defaulted and ranged as AttributionParams declares."""
    ranges = param_ranges()
    for name, kind in _NUMERIC.items():
        rng = ranges.get(name)
        default = rng.default if rng is not None else AttributionParams.model_fields[name].default
        span = f"{rng.min}-{rng.max}, " if rng is not None else ""
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=f"{span}default {default}")


def _params_from_args(args: argparse.Namespace) -> AttributionParams:
    params = AttributionParams(
        **{name: getattr(args, name) for name in _NUMERIC},
        target_tokens=args.target_tokens,
        logit_diff=tuple(args.logit_diff) if args.logit_diff else None,
        precision=args.precision,
        slug=args.slug,
    )
    try:
        params.check()
    except OutOfRange as e:
        raise SystemExit(f"error: --{e.name.replace('_', '-')}: {e}") from None
    return params


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="preset name, local model folder, .gguf file or hub id")
    p.add_argument("--transcoders", default=None, help="transcoder folder or config.yaml (default: the preset's)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    # checked once the command runs (_load_engine): the names live with torch's dtypes, and importing torch while
    # the arguments parse would come before the tokenizer's helper process starts
    p.add_argument("--dtype", default="float32", help="model dtype: float32 (default), bfloat16 or float16")


def _load_engine(args: argparse.Namespace, trace_only: bool = False) -> Engine:
    model, transcoders = args.model, args.transcoders
    if not Path(model).exists() and transcoders is None:
        from circuitboard.presets import resolve_preset  # a preset name

        resolved = resolve_preset(model)
        model, transcoders = resolved.model_dir, resolved.transcoders_dir
    if transcoders is None:
        raise SystemExit("error: --transcoders is required with a model path")
    # A large tokenizer.json parses while torch imports, in a second process (engine.file_tokenizer: Gemma's
    # is 1.2 s, all of it holding the GIL, so a thread could not overlap it).
    tokenizer = None
    if trace_only:
        from circuitboard.engine.file_tokenizer import start_tokenizer

        tokenizer = start_tokenizer(model)
    from circuitboard.engine.session import Engine  # torch and transformers: only once a command runs
    from circuitboard.precision import DTYPES, named_dtype

    if named_dtype(args.dtype) is None:
        if tokenizer is not None:
            tokenizer.cancel()
        raise SystemExit(f"error: --dtype: {args.dtype!r} is not one of {', '.join(DTYPES)}")
    print(f"loading {model} with transcoders {transcoders}", file=sys.stderr)
    # One command, one trace: its own first forward warms the model, so the loader's warm-up would be extra work.
    engine = Engine.load(
        model,
        transcoders,
        device=args.device,
        dtype=args.dtype,
        warm_up=False,
        trace_only=trace_only,
        tokenizer=tokenizer,
    )
    loaded()  # the garbage collector runs again, over what the command makes from here on
    return engine


class _Bar:
    """One tqdm bar per phase, on stderr."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.phase: str | None = None

    def __call__(self, ev: ProgressEvent) -> None:
        from tqdm import tqdm

        if ev.phase != self.phase or self.bar is None:
            self.close()
            self.phase = ev.phase
            self.bar = tqdm(total=ev.total, desc=ev.phase, unit="row", file=sys.stderr)
        self.bar.total = ev.total
        self.bar.n = ev.done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _trace(args: argparse.Namespace) -> int:
    params = _params_from_args(args)
    # `trace` needs the weights only: a plain model folder loads without importing transformers (engine.native).
    engine = _load_engine(args, trace_only=True)
    bar = _Bar()
    graph = engine.attribute_graph(args.prompt, params, progress=bar)
    data = engine.export(graph, params, progress=bar)
    bar.close()
    if args.raw:
        import numpy as np

        from circuitboard.engine.export import node_ids

        np.savez_compressed(args.raw, adjacency=graph.adjacency_matrix.numpy(), node_ids=np.array(node_ids(graph)))
    text = orjson.dumps(data)  # a 2,000-node graph is ~30 MB of JSON: ~10x faster than json.dumps
    if args.out:
        args.out.write_bytes(text)
        info = data["metadata"]["info"]
        print(
            f"wrote {args.out}: {len(data['nodes'])} nodes, {len(data['links'])} links, "
            f"replacement {info['replacement_score']:.3f}, completeness {info['completeness_score']:.3f}, "
            f"{info['timings']['total_s']:.2f}s",
            file=sys.stderr,
        )
    else:
        sys.stdout.write(text.decode() + "\n")
    return 0


def parse_feature_spec(spec: str) -> FeatureIntervention:
    """`L:F[@P]=V`, `L:F[@P]*=S`, `L:F[@P]:zero` → FeatureIntervention."""
    mode: InterventionMode = "set"
    value = 0.0
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


def _intervene(args: argparse.Namespace) -> int:
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


def _tiny(args: argparse.Namespace) -> int:
    from circuitboard.devtools.tiny import build_tiny_checkpoint

    model_dir, tc_dir = build_tiny_checkpoint(args.out, args.arch, kind=args.kind, cross_layer=args.clt, skip=args.skip)
    print(f"model: {model_dir}\ntranscoders: {tc_dir}")
    return 0
