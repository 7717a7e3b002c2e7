"""GPU smoke bench: the whole pipeline on one device, with timings — trace, intervene, activation cache,
transcoder training and the atlas, on a small random model; plus a trace of the real default preset when it is
prepared (models/gemma-3-270m).

    .venv/bin/python bench/gpu_smoke.py                 # cuda when present, else the CPU (a dry run)
    .venv/bin/python bench/gpu_smoke.py --device cuda:0 --d-model 512 --layers 8

It is one command so that it can run as-is on a lent GPU machine; the figures go to bench/README.md. Each step
checks that its outputs live on the device asked for (no hidden CPU round trip of the main tensors).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "The capital of the state containing Dallas is"
TEXT = (
    "The quick brown fox jumps over the lazy dog. A stitch in time saves nine. "
    "Dallas is a city in Texas, and Austin is its capital. Two plus two is four. "
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(name: str, device: torch.device, fn: Callable[[], Any], rows: list[dict]) -> Any:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    rows.append({"step": name, "seconds": round(seconds, 3), "peak_gib": None if peak is None else round(peak, 2)})
    print(f"{name:<28} {seconds:8.3f} s" + ("" if peak is None else f"   peak {peak:6.2f} GiB"), flush=True)
    return out


def tiny_pipeline(device: torch.device, work: Path, args: argparse.Namespace, rows: list[dict]) -> None:
    from circuitboard.atlas.build import build_atlas
    from circuitboard.data.activations import build_activation_cache
    from circuitboard.data.corpus import build_corpus
    from circuitboard.devtools.tiny import build_tiny_checkpoint
    from circuitboard.engine.loading import load_model
    from circuitboard.engine.session import Engine
    from circuitboard.engine.types import AttributionParams, FeatureIntervention, InterventionRequest
    from circuitboard.training.config import TrainConfig
    from circuitboard.training.train import train_transcoders

    model_dir, tc_dir = build_tiny_checkpoint(
        work / "tiny", "llama", n_layers=args.layers, d_model=args.d_model, d_transcoder=4 * args.d_model
    )
    engine = timed("load engine (tiny)", device, lambda: Engine.load(model_dir, tc_dir, device=device), rows)
    assert engine.tset.device.type == device.type, "transcoders are not on the device"
    params = AttributionParams(max_feature_nodes=args.max_feature_nodes)
    graph = timed("trace (tiny)", device, lambda: engine.attribute(PROMPT, params), rows)
    print(f"  {len(graph['nodes'])} nodes, {len(graph['links'])} links")
    req = InterventionRequest(prompt=PROMPT, interventions=[FeatureIntervention(layer=0, feature=0, mode="zero")])
    timed("intervene (tiny)", device, lambda: engine.intervene(req), rows)
    lean = timed(
        "load engine (tiny, trace-only)",
        device,
        lambda: Engine.load(model_dir, tc_dir, device=device, trace_only=True),
        rows,
    )
    timed("trace (tiny, trace-only)", device, lambda: lean.attribute(PROMPT, params), rows)

    model, tok, _ = load_model(model_dir, device=device)
    texts = work / "texts"
    texts.mkdir()
    for i in range(40):
        (texts / f"doc{i}.txt").write_text(f"Document {i}. " + TEXT * (3 + i % 5))
    build_corpus(work / "corpus", local_dir=texts, heldout_fraction=0.2, log=lambda _m: None)
    cache = work / "cache"
    timed(
        "activation cache (tiny)",
        device,
        lambda: build_activation_cache(
            model,
            tok,
            work / "corpus",
            cache,
            n_train_tokens=4096,
            n_heldout_tokens=1024,
            seq_len=64,
            batch_size=16,
            progress=False,
            log=lambda _m: None,
        ),
        rows,
    )
    cfg = TrainConfig(
        width=4 * args.d_model,
        k=16,
        train_tokens=3072,
        heldout_tokens=1024,
        steps_tokens=16_384,
        batch_size=256,
        warmup_steps=5,
        dead_window=2000,
    )
    out = work / "trained"
    metrics = timed(
        "train transcoders (tiny)",
        device,
        lambda: train_transcoders(cache, out, cfg, progress=False, log=lambda _m: None, device=device),
        rows,
    )
    assert metrics["device"] == device.type, "transcoders were not trained on the device"
    timed(
        "atlas (tiny)",
        device,
        lambda: build_atlas(model, out, cache, work / "atlas.sqlite", progress=False, tokenizer=tok, device=device),
        rows,
    )


def real_trace(device: torch.device, rows: list[dict]) -> None:
    from circuitboard.engine.session import Engine
    from circuitboard.engine.types import AttributionParams

    root = ROOT / "models" / "gemma-3-270m"
    if not (root / "model" / "config.json").is_file() or not (root / "transcoders" / "config.yaml").is_file():
        print("real preset: not prepared (run `make prepare`); skipped")
        return
    engine = timed(
        "load engine (gemma-3-270m)", device, lambda: Engine.load(root / "model", root / "transcoders"), rows
    )
    graph = timed("trace (gemma-3-270m)", device, lambda: engine.attribute(PROMPT, AttributionParams()), rows)
    print(f"  {len(graph['nodes'])} nodes, {len(graph['links'])} links")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--max-feature-nodes", type=int, default=500)
    ap.add_argument("--no-real", action="store_true", help="skip the real preset")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run: no GPU here)"
    print(f"device: {device} — {name}; torch {torch.__version__}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        tiny_pipeline(device, Path(tmp), args, rows)
    if not args.no_real:
        real_trace(device, rows)
    if args.json:
        args.json.write_text(json.dumps({"device": str(device), "name": name, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
