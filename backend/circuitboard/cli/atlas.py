"""CLI: `circuitboard atlas build | export | search | explain` (registered by cli.py)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("atlas", help="feature atlas: examples, statistics, labels, search")
    asub = p.add_subparsers(dest="atlas_command", metavar="SUBCOMMAND")
    asub.required = True

    b = asub.add_parser("build", help="build (or resume) a preset's atlas from its activation cache")
    _where(b)
    b.add_argument("--max-tokens", type=int, default=None, help="use at most this many cached tokens")
    b.add_argument("--layers", help="comma-separated subset of layers")
    b.add_argument("--no-resume", action="store_true", help="rebuild every layer (user labels are kept)")
    b.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default="auto",
        help="matmul dtype (auto: bf16 only where this machine computes it fast)",
    )
    b.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    b.add_argument(
        "--device",
        default=None,
        help="cpu or cuda[:N] for the scan (default: $CIRCUITBOARD_DEVICE, else cuda when available)",
    )
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_cmd_build)

    e = asub.add_parser("export", help="write circuit-tracer's features/ layout (index.json.gz + layer_i.bin)")
    _where(e)
    e.add_argument("--to", type=Path, default=None, help="output folder (default models/<preset>/atlas_export)")
    e.add_argument("--json-files", action="store_true", help="also write one {cantor id}.json per feature")
    e.set_defaults(func=_cmd_export)

    s = asub.add_parser("search", help="search features by label, token or example text")
    _where(s)
    s.add_argument("query")
    s.add_argument("--limit", type=int, default=20)
    s.set_defaults(func=_cmd_search)

    x = asub.add_parser("explain", help="LLM explanations (needs CIRCUITBOARD_LLM_BASE_URL and _MODEL)")
    _where(x)
    x.add_argument("features", nargs="+", help="LAYER/INDEX ...")
    x.add_argument("--refresh", action="store_true")
    x.set_defaults(func=_cmd_explain)


def _where(p: argparse.ArgumentParser) -> None:
    from circuitboard.config import DEFAULT_MODELS_DIR, DEFAULT_PRESET

    p.add_argument("--preset", default=DEFAULT_PRESET)
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    p.add_argument("--model", type=Path, help="model folder (default: the preset's)")
    p.add_argument("--transcoders", type=Path, help="transcoder folder (default: the preset's)")
    p.add_argument("--cache", type=Path, help="activation cache folder (default: the preset's)")
    p.add_argument("--atlas", type=Path, help="atlas file (default: models/<preset>/atlas.sqlite)")


def _paths(args: argparse.Namespace, fetch: bool = False) -> dict:
    """The preset's paths with any explicit override; presets are only resolved when something is missing."""
    out = {"model": args.model, "transcoders": args.transcoders, "cache": args.cache, "atlas": args.atlas, "root": None}
    if any(v is None for k, v in out.items() if k != "root"):
        from circuitboard.presets import load_preset, preset_paths, resolve_preset

        rp = (
            resolve_preset(args.preset, args.models_dir)
            if fetch
            else preset_paths(load_preset(args.preset, args.models_dir), args.models_dir)
        )
        out["model"] = out["model"] or rp.model_dir
        out["transcoders"] = out["transcoders"] or rp.transcoders_dir
        out["cache"] = out["cache"] or rp.activations_dir
        out["atlas"] = out["atlas"] or rp.atlas_path
        out["root"] = rp.root
    return out


def _cmd_build(args: argparse.Namespace) -> int:
    import torch

    from circuitboard.atlas.build import build_atlas
    from circuitboard.atlas.params import AtlasParams
    from circuitboard.engine.loading import default_device

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    needs_model = args.model is None
    paths = _paths(args, fetch=needs_model)
    if not Path(paths["transcoders"]).is_dir():
        raise SystemExit(
            f"no transcoders at {paths['transcoders']}; run `circuitboard prepare --preset "
            f"{args.preset}` (or train-transcoders) first"
        )
    layers = [int(x) for x in args.layers.split(",")] if args.layers else None
    res = build_atlas(
        paths["model"],
        paths["transcoders"],
        paths["cache"],
        paths["atlas"],
        max_tokens=args.max_tokens,
        progress=not args.quiet,
        resume=not args.no_resume,
        params=AtlasParams(precision=args.precision),
        layers=layers,
        device=args.device or default_device(),
    )
    print(
        f"atlas: {res.out_path} — {res.n_features} features over {res.n_tokens} tokens; built layers "
        f"{res.layers_built or 'none (up to date)'} in {res.seconds:.1f} s"
        + (f" ({res.tokens_per_s:,.0f} tokens/s)" if res.layers_built else "")
    )
    if res.timings:
        print("atlas timings (s): " + ", ".join(f"{k} {v}" for k, v in res.timings.items()))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from circuitboard.atlas.export import export_atlas

    paths = _paths(args)
    to = args.to or (Path(paths["root"]) / "atlas_export" if paths["root"] else Path(paths["atlas"]).parent)
    fdir = export_atlas(paths["atlas"], to, json_files=args.json_files, progress=True)
    print(f"exported to {fdir}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from circuitboard.atlas.search import search
    from circuitboard.atlas.store import AtlasStore

    for r in search(AtlasStore(_paths(args)["atlas"]), args.query, limit=args.limit):
        print(f"L{r['layer']}/{r['index']}\t{r['max_act']:.3g}\t{r['frequency']:.2e}\t{r['label']}")
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from circuitboard.atlas.labels import LLMConfig, explain
    from circuitboard.atlas.store import AtlasStore

    cfg = LLMConfig.from_env()
    if cfg is None:
        raise SystemExit("set CIRCUITBOARD_LLM_BASE_URL and CIRCUITBOARD_LLM_MODEL (and _API_KEY if needed)")
    store = AtlasStore(_paths(args)["atlas"])
    for spec in args.features:
        layer, index = (int(x) for x in spec.replace(":", "/").split("/"))
        print(
            json.dumps(
                {"layer": layer, "index": index, "explanation": explain(store, layer, index, cfg, refresh=args.refresh)}
            )
        )
    return 0
