"""The trained set on disk: each layer's weights on raw activations and config.yaml, written through the
engine's transcoder writer (circuit-tracer's PLT layout)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from circuitboard.engine.transcoder_files import LayerTensors, set_config, write_config
from circuitboard.training.config import TrainConfig
from circuitboard.training.transcoder import Transcoder


def export_layer(tc: Transcoder, sx: float, sy: float) -> LayerTensors:
    """The layer on raw activations: x/sx and y*sy folded into the weights (float32, on the CPU)."""
    log_thr = tc.log_thr  # JumpReLU only; TopK keeps k
    return LayerTensors(
        W_enc=(tc.W_enc.detach().cpu() / sx).float(),
        b_enc=tc.b_enc.detach().cpu().float(),
        b_dec=(tc.b_dec.detach().cpu() * sy).float(),
        W_dec=(tc.W_dec.detach().cpu() * sy).float(),
        W_skip=None if tc.W_skip is None else (tc.W_skip.detach().cpu() * (sy / sx)).float(),
        threshold=None if log_thr is None else log_thr.detach().cpu().exp().float(),
        k=tc.k if log_thr is None else None,
    )


def write_set_config(out_dir: Path, n_layers: int, cfg: TrainConfig, model_name: str, budget: str | None) -> None:
    """config.yaml of the finished set, with the training recipe under `training`."""
    recipe = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
    conf = set_config(
        n_layers=n_layers,
        model_name=model_name,
        activation=cfg.activation,
        k=cfg.k,
        extra={"training": {"budget": budget, **recipe}},
    )
    write_config(out_dir, conf)
