"""CLI: `circuitboard prepare` — everything a preset needs, each step skipped when already done:
model -> corpus -> activation cache -> transcoders (training) -> feature atlas."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from circuitboard.cli.training import common_args, ensure_cache, setup_torch, train_config
from circuitboard.presets import ResolvedPreset, resolve_preset
from circuitboard.training.config import TrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    pr = sub.add_parser("prepare", help="everything a preset needs, each step skipped when already done")
    common_args(pr)
    pr.add_argument("--no-atlas", action="store_true")
    pr.set_defaults(func=_cmd_prepare)


def _same_run(metrics_path: Path, args: argparse.Namespace) -> bool:
    """A set (or a partial run) of this budget and kind: sets trained before CLTs existed are per-layer."""
    if not metrics_path.exists():
        return False
    m = json.loads(metrics_path.read_text())
    return m.get("budget") == args.budget and m.get("kind", "plt") == args.kind


def _needs_jumprelu(rp: ResolvedPreset, cfg: TrainConfig) -> bool:
    """A per-layer TopK set trained here, where the budget writes JumpReLU (a set from before issue 17)."""
    conf, trained_here = rp.transcoders_dir / "config.yaml", (rp.transcoders_dir / "metrics.json").exists()
    if not (cfg.jumprelu_export and cfg.kind == "plt" and conf.exists() and trained_here):
        return False
    return yaml.safe_load(conf.read_text()).get("activation") == "topk"


def _transcoders_current(rp: ResolvedPreset, args: argparse.Namespace) -> bool:
    mp = rp.transcoders_dir / "metrics.json"
    if not rp.transcoders_ready():
        return False
    if not mp.exists():  # a set put there by hand or from the hub: keep it
        return True
    return _same_run(mp, args)


def _cmd_prepare(args: argparse.Namespace) -> int:
    setup_torch(args)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    @contextmanager
    def step(name: str) -> Iterator[None]:
        t = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            yield
        finally:
            timings[name] = round(time.perf_counter() - t, 1)
            print(f"== {name}: {timings[name]} s", flush=True)

    with step("model"):
        rp = resolve_preset(args.preset, args.models_dir)
    trained = rp.preset.transcoders.kind == "trained"
    cfg = train_config(args)
    stale = not _transcoders_current(rp, args) or _needs_jumprelu(rp, cfg)
    need_cache = (trained and stale) or not args.no_atlas
    if need_cache:
        from circuitboard.data.corpus import build_corpus

        with step("corpus"):
            build_corpus(args.corpus)
        with step("activations"):
            ensure_cache(rp, cfg, args.corpus, device=args.device)
    if trained:
        with step("transcoders"):
            _train(rp, args, cfg)
    if not args.no_atlas:
        with step("atlas"):
            _build_atlas(rp, args)
    timings["total"] = round(time.perf_counter() - t_all, 1)
    rp.root.mkdir(parents=True, exist_ok=True)
    (rp.root / "prepare.json").write_text(json.dumps({"budget": args.budget, "seconds": timings}, indent=2))
    print("prepare: " + ", ".join(f"{k} {v} s" for k, v in timings.items()))
    return 0


def _train(rp: ResolvedPreset, args: argparse.Namespace, cfg: TrainConfig) -> None:
    """Train the preset's transcoders unless they are current; resume a partial run of the same budget."""
    from circuitboard.training.train import train_transcoders

    if _transcoders_current(rp, args):
        if _needs_jumprelu(rp, cfg):  # a TopK set of this budget: made JumpReLU in place, not retrained
            from circuitboard.training.train import calibrate_set

            print(f"transcoders: {rp.transcoders_dir} is TopK; writing it as JumpReLU (circuit-tracer loads that)")
            calibrate_set(rp.transcoders_dir, rp.activations_dir)
            return
        print(f"transcoders: {rp.transcoders_dir} is up to date (budget {args.budget}, {args.kind})")
        return
    partial = rp.transcoders_dir.with_name(rp.transcoders_dir.name + ".partial")
    same = _same_run(partial / "metrics.json", args)
    train_transcoders(
        rp.activations_dir,
        rp.transcoders_dir,
        cfg,
        model_name=rp.name,
        budget=args.budget,
        resume=same,
        device=args.device,
    )


def _build_atlas(rp: ResolvedPreset, args: argparse.Namespace) -> None:
    from circuitboard.atlas.build import build_atlas

    # resumes an interrupted build and returns at once when the atlas is complete
    build_atlas(
        model_dir=rp.model_dir,
        transcoders_dir=rp.transcoders_dir,
        cache_dir=rp.activations_dir,
        out_path=rp.atlas_path,
        corpus_dir=args.corpus,
        device=args.device,  # the device the activation cache and training used
    )
