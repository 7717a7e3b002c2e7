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

import ctypes
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
import yaml

from circuitboard.data.activations import SIDES, load_rows
from circuitboard.engine.transcoder_files import LayerTensors, layer_file, read_transcoder_files, write_layer
from circuitboard.training.calibrate import evaluate_layer, topk_to_jumprelu
from circuitboard.training.clt import evaluate_clt
from circuitboard.training.clt_train import train_clt, train_jumprelu_layer
from circuitboard.training.config import TrainConfig
from circuitboard.training.export import export_clt, export_layer, write_set_config
from circuitboard.training.layer import train_layer
from circuitboard.training.run import (
    Progress,
    Splits,
    checkpoint_step,
    complete_manifest,
    config_dict,
    config_of,
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


def calibrate_set(set_dir: Path, cache_dir: Path, log: Callable[[str], None] = print) -> dict:
    """A per-layer TopK set trained here (metrics.json beside it) made JumpReLU, on the train split it was trained
    on: what `prepare` does to a set from before `jumprelu_export`, in seconds a layer instead of a retraining.
    Written beside the set and swapped in at the end, so that the folder holds a whole set at every moment."""
    metrics = json.loads((set_dir / "metrics.json").read_text())
    conf = yaml.safe_load((set_dir / "config.yaml").read_text())
    cfg = replace(config_of(metrics["config"]), jumprelu_export=True)
    m = complete_manifest(cache_dir)
    splits = Splits.of(m, cfg)
    stored = read_transcoder_files(set_dir, lazy_decoder=False)
    tmp = set_dir.with_name(set_dir.name + ".calibrating")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for layer, t in enumerate(stored.layers):
        t0 = time.perf_counter()
        x, y = (load_rows(cache_dir, layer, side, splits.train, m) for side in SIDES)
        jr = topk_to_jumprelu(t, x, y)
        del x, y
        write_layer(tmp, layer, jr)
        xh, yh = (load_rows(cache_dir, layer, side, splits.heldout, m) for side in SIDES)
        old = metrics["layers"][str(layer)]
        res = {**evaluate_layer(jr, xh, yh), "topk": old, "seconds": old.get("seconds", 0.0)}
        metrics["layers"][str(layer)] = {**res, "calibrate_seconds": round(time.perf_counter() - t0, 1)}
        log(f"layer {layer}: JumpReLU EV {res['explained_variance']:.3f} (TopK {old['explained_variance']:.3f}), "
            f"L0 {res['l0']:.1f}")  # fmt: skip
    n_layers = len(stored.layers)
    scan = conf.get("scan") or f"{conf.get('model_name')}/{set_dir.name}"
    write_set_config(tmp, n_layers, cfg, conf.get("model_name") or "", metrics.get("budget"), scan=scan)
    metrics["config"] = config_dict(cfg)
    metrics["summary"] = summary(metrics, list(range(n_layers)), 0.0)
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    _swap(set_dir, tmp)
    return metrics


def _swap(old: Path, new: Path) -> None:
    """`new` takes `old`'s place in one step where the kernel can exchange two folders (Linux `renameat2`),
    else by two renames (a reader between them finds no folder for a moment); `old`'s files are then deleted."""
    libc = ctypes.CDLL(None, use_errno=True)
    exchange = getattr(libc, "renameat2", None)
    at_cwd, rename_exchange = -100, 2
    if exchange is None or exchange(at_cwd, bytes(new), at_cwd, bytes(old), rename_exchange) != 0:
        gone = old.with_name(old.name + ".old")
        shutil.rmtree(gone, ignore_errors=True)
        old.rename(gone)
        new.rename(old)
        new = gone
    shutil.rmtree(new)
