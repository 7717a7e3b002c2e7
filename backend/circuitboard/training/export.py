"""The trained set on disk: each layer's weights on raw activations and config.yaml, written through the
engine's transcoder writer (circuit-tracer's PLT or CLT layout)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from circuitboard.engine.transcoder_files import LayerTensors, set_config, write_config
from circuitboard.training.clt import CrossLayerTranscoder
from circuitboard.training.config import TrainConfig
from circuitboard.training.transcoder import Transcoder


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().float()


def export_layer(tc: Transcoder, sx: float, sy: float) -> LayerTensors:
    """A TopK layer on raw activations: x/sx and y*sy folded into the weights (float32, on the CPU)."""
    return LayerTensors(
        W_enc=(tc.W_enc.detach().cpu() / sx).float(),
        b_enc=tc.b_enc.detach().cpu().float(),
        b_dec=(tc.b_dec.detach().cpu() * sy).float(),
        W_dec=(tc.W_dec.detach().cpu() * sy).float(),
        W_skip=None if tc.W_skip is None else (tc.W_skip.detach().cpu() * (sy / sx)).float(),
        k=tc.k,
    )


def export_clt(tc: CrossLayerTranscoder, sx: torch.Tensor, sy: torch.Tensor) -> list[LayerTensors]:
    """Every layer of a CLT on raw activations: encoder l divided by sx_l (pre-activations, hence thresholds,
    keep their units), decoder block l -> l + j multiplied by sy_{l+j}; W_dec_l stored [width, L - l, d]."""
    L, d = tc.n_layers, tc.d
    sx, sy = sx.cpu().float(), sy.cpu().float()
    out = []
    for layer in range(L):
        dec = _cpu(tc.W_dec[layer]).view(tc.width, L - layer, d) * sy[layer:, None]
        skip = None if tc.W_skip is None else _cpu(tc.W_skip[layer]) * (sy[layer] / sx[layer])
        out.append(
            LayerTensors(
                W_enc=_cpu(tc.W_enc[layer]) / sx[layer],
                b_enc=_cpu(tc.b_enc[layer]),
                b_dec=_cpu(tc.b_dec[layer]) * sy[layer],
                W_dec=dec.contiguous(),
                W_skip=skip,
                threshold=None if tc.log_thr is None else _cpu(tc.log_thr[layer]).exp(),
                k=tc.k if tc.log_thr is None else None,
            )
        )
    return out


def write_set_config(
    out_dir: Path, n_layers: int, cfg: TrainConfig, model_name: str, budget: str | None, *, scan: str
) -> None:
    """config.yaml of the finished set, with the training recipe under `training`."""
    recipe = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
    written = "jumprelu" if cfg.jumprelu_export else cfg.activation
    conf = set_config(
        n_layers=n_layers,
        cross_layer=cfg.kind == "clt",
        model_name=model_name,
        scan=scan,
        activation=written,
        k=cfg.k,
        skip=cfg.skip,
        extra={"training": {"budget": budget, **recipe}},
    )
    write_config(out_dir, conf)
