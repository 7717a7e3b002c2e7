"""Per-layer transcoders trained on the activation cache (`circuitboard train-transcoders`).

Each layer: TopK (default) or JumpReLU latents with a linear skip, trained to map the MLP's normalised input
(`mlp.hook_in`) to the MLP block's output (`mlp.hook_out`). Recipe measured on the 2-core CPU in
shared/reference/transcoder-training.md, with changes that buy EV per second:
  * the skip connection starts at the least-squares affine map x -> y (closed form, about a second), so the
    latents only learn what a linear map cannot, instead of first re-learning the linear part;
  * the encoder's backward touches only the k selected latents per token (a sparse index_add instead of a
    dense [batch, width] x [batch, d] product), which halves the step time at k=32, width 4096;
  * dead latents are revived by resampling and a bias nudge instead of an AuxK loss (see TrainConfig):
    about 30 ms a step instead of 90 at width 4096.
x and y are scaled by one scalar each while training; the scales are folded into the saved weights, which
therefore act on the model's raw activations. Output: circuit-tracer's PLT layout plus metrics.json.

The module (`transcoder`), one layer's steps (`layer`), the files written (`export`) and what every run shares
(`run`) live beside this run over all layers; `--kind clt` runs `clt_train` instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from circuitboard.data.activations import load_rows
from circuitboard.engine.transcoder_files import LayerTensors, layer_file, write_layer
from circuitboard.training.calibrate import evaluate_layer, topk_to_jumprelu
from circuitboard.training.clt import evaluate_clt
from circuitboard.training.clt_train import train_clt, train_jumprelu_layer
from circuitboard.training.config import TrainConfig
from circuitboard.training.export import export_clt, export_layer
from circuitboard.training.layer import train_layer
from circuitboard.training.run import (
    Progress,
    Splits,
    checkpoint_step,
    complete_manifest,
    partial_dir,
    publish,
    start_metrics,
    summary,
    summary_line,
)
from circuitboard.training.transcoder import evaluate


def train_transcoders(
    cache_dir: Path,
    out_dir: Path,
    cfg: TrainConfig,
    *,
    model_name: str = "",
    budget: str | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    should_stop: Callable[[], bool] | None = None,
    device: str | torch.device = "cpu",
) -> dict:
    """Train a set on the cache into `out_dir` (circuit-tracer's PLT or CLT layout, as `cfg.kind` says). Work in
    progress lives in `<out_dir>.partial/` (finished layers, checkpoints, metrics so far); `resume=True`
    continues from there; the folder is renamed to `out_dir` only when every layer is done."""
    if cfg.kind == "clt":
        return train_clt(
            cache_dir, out_dir, cfg, model_name=model_name, budget=budget, resume=resume, progress=progress,
            log=log, should_stop=should_stop, device=device,
        )  # fmt: skip
    device = torch.device(device)
    m = complete_manifest(cache_dir)
    layers = list(cfg.layers) if cfg.layers is not None else list(m["layers"])
    splits = Splits.of(m, cfg)
    partial = partial_dir(Path(out_dir), resume)
    metrics_path = partial / "metrics.json"
    metrics = start_metrics(metrics_path, cfg, budget, device, cache_dir, splits)
    todo = [layer for layer in layers if not layer_file(partial, layer).exists()]
    bar = Progress(progress, len(layers) * cfg.steps_tokens, (len(layers) - len(todo)) * cfg.steps_tokens)
    t_all = time.perf_counter()
    try:
        for layer in todo:
            t0 = time.perf_counter()
            tensors, sx, sy, res = _train_and_evaluate(
                cache_dir, m, splits, layer, cfg, partial, bar, should_stop, device
            )
            res["seconds"] = round(time.perf_counter() - t0, 1)
            res["scales"] = {"x": sx, "y": sy}
            write_layer(partial, layer, tensors)
            metrics["layers"][str(layer)] = res
            metrics_path.write_text(json.dumps(metrics, indent=2))
            (partial / f"layer_{layer}.ckpt.pt").unlink(missing_ok=True)
            bar.write(_layer_line(layer, res), log)
    finally:
        bar.close()
    metrics["summary"] = summary(metrics, layers, time.perf_counter() - t_all)
    metrics_path.write_text(json.dumps(metrics, indent=2))
    final = publish(partial, Path(out_dir), layers, max(m["layers"]) + 1, cfg, model_name, budget)
    log(summary_line(final, metrics["summary"]))
    return metrics


def _train_and_evaluate(
    cache_dir: Path,
    m: dict,
    splits: Splits,
    layer: int,
    cfg: TrainConfig,
    partial: Path,
    bar: Progress,
    should_stop: Callable[[], bool] | None,
    device: torch.device,
) -> tuple[LayerTensors, float, float, dict]:
    """One layer trained on the train split (resuming its checkpoint) and measured on the held-out split: its
    tensors on raw activations, its scales and its held-out metrics. TopK layers train here (`layer`), JumpReLU
    ones as a CLT of one layer (`clt_train`)."""
    x = load_rows(cache_dir, layer, "in", splits.train, m)
    y = load_rows(cache_dir, layer, "out", splits.train, m)
    ckpt = partial / f"layer_{layer}.ckpt.pt"
    bar.start(f"layer {layer}", checkpoint_step(ckpt) * cfg.batch_size)
    if cfg.activation == "jumprelu":
        clt, sxs, sys_ = train_jumprelu_layer(
            x, y, cfg, ckpt_path=ckpt, on_step=bar.on_step, should_stop=should_stop, device=device
        )
        del x, y
        xh = load_rows(cache_dir, layer, "in", splits.heldout, m)
        yh = load_rows(cache_dir, layer, "out", splits.heldout, m)
        res = evaluate_clt(clt, [(xh[None], yh[None])], sxs, sys_)[0]
        tensors = export_clt(clt, sxs, sys_)[0]
        assert tensors.W_dec is not None
        tensors.W_dec = tensors.W_dec[:, 0]  # a PLT's decoder writes to its own layer only: [width, d]
        return tensors, float(sxs[0]), float(sys_[0]), res
    tc, sx, sy = train_layer(x, y, cfg, ckpt_path=ckpt, on_step=bar.on_step, should_stop=should_stop, device=device)
    tensors = export_layer(tc, sx, sy)
    if cfg.jumprelu_export:
        tensors = topk_to_jumprelu(tensors, x, y)
    del x, y
    xh = load_rows(cache_dir, layer, "in", splits.heldout, m)
    yh = load_rows(cache_dir, layer, "out", splits.heldout, m)
    res = evaluate(tc, xh, yh, sx, sy)
    if cfg.jumprelu_export:  # the figures of what is written, the trained TopK's beside them
        res = {**evaluate_layer(tensors, xh, yh), "topk": res}
    return tensors, sx, sy, res


def _layer_line(layer: int, res: dict) -> str:
    return (
        f"layer {layer}: EV {res['explained_variance']:.3f} (skip alone "
        f"{res.get('explained_variance_skip_only', float('nan')):.3f}), L0 {res['l0']:.1f}, "
        f"dead {100 * res['dead_fraction']:.1f}%, {res['seconds']} s"
    )
