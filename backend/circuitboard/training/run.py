"""What every training run shares, per-layer (`train.py`) or cross-layer (`clt_train.py`): the cache splits it
uses, the `.partial` folder work in progress lives in, metrics.json, the progress bar, and publishing the set."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from circuitboard.data.activations import read_manifest
from circuitboard.precision import compute_dtype_name
from circuitboard.training.config import TrainConfig
from circuitboard.training.export import write_set_config


@dataclass(frozen=True)
class Splits:
    """The prefix of each cache split a run uses (sequence ranges)."""

    train: tuple[int, int]
    heldout: tuple[int, int]
    seq_len: int

    @classmethod
    def of(cls, m: dict, cfg: TrainConfig) -> Splits:
        T = m["seq_len"]
        tr0, tr1 = m["split"]["train"]
        ho0, ho1 = m["split"]["heldout"]
        n_train_seqs = min(tr1 - tr0, math.ceil(cfg.train_tokens / T))
        n_held_seqs = min(ho1 - ho0, math.ceil(cfg.heldout_tokens / T))
        return cls((tr0, tr0 + n_train_seqs), (ho0, ho0 + n_held_seqs), T)

    def tokens(self, seqs: tuple[int, int]) -> int:
        return (seqs[1] - seqs[0]) * (self.seq_len - 1)  # position 0 (BOS) is never trained on


def complete_manifest(cache_dir: Path) -> dict:
    m = read_manifest(cache_dir)
    if m is None or m["complete_seqs"] < m["n_seqs"]:
        raise RuntimeError(f"activation cache {cache_dir} is missing or incomplete; build it first")
    return m


class Progress:
    """The bar over a run's steps (or nothing), with a smoothed batch EV of what is being trained.

    The EV arrives as a tensor on the training device and is smoothed there: it is read back (one device ->
    host sync) only every `read_every` steps, to redraw the bar, never when there is no bar."""

    def __init__(
        self, enabled: bool, total_tokens: int, done_tokens: int, desc: str = "transcoders", read_every: int = 25
    ):
        self.bar: Any = None
        self.ev: torch.Tensor | float | None = None
        self.what = ""
        self.read_every, self._since_read = read_every, 0
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_tokens,
                initial=done_tokens,
                unit="tok",
                unit_scale=True,
                desc=desc,
                dynamic_ncols=True,
                smoothing=0.05,
            )

    def start(self, what: str, resumed_tokens: int = 0) -> None:
        if self.bar is not None and resumed_tokens:
            self.bar.update(resumed_tokens)
        self.what, self.ev, self._since_read = what, None, 0

    def on_step(self, n_tokens: int, ev: torch.Tensor | float) -> None:
        self.ev = ev if self.ev is None else 0.98 * self.ev + 0.02 * ev
        if self.bar is None:
            return
        self.bar.update(n_tokens)
        self._since_read += 1
        if self._since_read >= self.read_every:
            self._since_read = 0
            self.bar.set_postfix_str(f"{self.what} EV {float(self.ev):.3f}", refresh=False)

    def write(self, msg: str, log: Callable[[str], None]) -> None:
        (self.bar.write if self.bar is not None else log)(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def checkpoint_step(ckpt: Path) -> int:
    return int(torch.load(ckpt, weights_only=False)["step"]) if ckpt.exists() else 0


def partial_dir(out_dir: Path, resume: bool) -> Path:
    partial = out_dir.with_name(out_dir.name + ".partial")
    if partial.exists() and not resume:
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    return partial


def config_dict(cfg: TrainConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def config_of(stored: dict) -> TrainConfig:
    """The `TrainConfig` that `config_dict` wrote (metrics.json's `config`)."""
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()}
    return TrainConfig(**fields)


def start_metrics(
    metrics_path: Path, cfg: TrainConfig, budget: str | None, device: torch.device, cache_dir: Path, splits: Splits
) -> dict:
    """metrics.json so far (a resumed run keeps its finished layers), with this run's settings."""
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    metrics.update(
        {
            "budget": budget,
            "kind": cfg.kind,
            "device": device.type,
            "compute_dtype": compute_dtype_name(device.type),
            "config": config_dict(cfg),
            "cache": {
                "dir": str(cache_dir),
                "train_tokens": splits.tokens(splits.train),
                "heldout_tokens": splits.tokens(splits.heldout),
            },
        }
    )
    metrics.setdefault("layers", {})
    return metrics


def summary(metrics: dict, layers: list[int], seconds: float) -> dict:
    per = [metrics["layers"][str(layer)] for layer in layers]
    evs = [r["explained_variance"] for r in per]
    return {
        "mean_explained_variance": sum(evs) / len(evs),
        "min_explained_variance": min(evs),
        "max_l0": max(r["l0"] for r in per),
        "mean_l0": sum(r["l0"] for r in per) / len(per),
        "max_dead_fraction": max(r["dead_fraction"] for r in per),
        "mean_dead_fraction": sum(r["dead_fraction"] for r in per) / len(layers),
        "train_seconds_this_run": round(seconds, 1),
        # every run's steps, a resumed run's earlier ones included
        "train_seconds": round(sum(r.get("seconds", 0.0) for r in per), 1),
    }


def summary_line(final: Path, s: dict) -> str:
    return (
        f"transcoders -> {final}: mean EV {s['mean_explained_variance']:.3f} (min "
        f"{s['min_explained_variance']:.3f}), max L0 {s['max_l0']:.1f}, max dead {100 * s['max_dead_fraction']:.1f}%"
    )


def publish(
    partial: Path,
    out_dir: Path,
    layers: list[int],
    n_layers_model: int,
    cfg: TrainConfig,
    model_name: str,
    budget: str | None,
) -> Path:
    """A set of every layer becomes `out_dir` (config.yaml written); a subset of layers is an experiment, not a
    usable set, and stays in .partial."""
    if set(layers) != set(range(n_layers_model)):
        return partial
    write_set_config(partial, n_layers_model, cfg, model_name, budget, scan=f"{model_name}/{out_dir.name}")
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)
    return out_dir
