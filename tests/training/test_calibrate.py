"""TopK sets written as JumpReLU (`jumprelu_export`, on in the CLI budgets): circuit-tracer 0.5.0 loads them, and
they reconstruct as well as the TopK they come from, at the same L0."""

from __future__ import annotations

from dataclasses import replace

import torch
import yaml
from safetensors import safe_open
from test_train import CFG

from circuitboard.data.activations import load_rows
from circuitboard.engine.transcoders import load_transcoder_set
from circuitboard.training.calibrate import rate_thresholds
from circuitboard.training.config import config_for
from circuitboard.training.train import train_transcoders


def test_rate_thresholds_keep_each_features_firing_rate():
    g = torch.Generator().manual_seed(0)
    pre = torch.randn(4000, 64, generator=g) * torch.linspace(0.5, 2, 64)
    thr = rate_thresholds(pre, k=4)
    top = pre.topk(4, dim=1)
    chosen = torch.zeros_like(pre, dtype=torch.bool).scatter_(1, top.indices, top.values > 0)
    assert torch.equal((pre > thr).sum(0), chosen.sum(0))


def test_topk_set_written_as_jumprelu(cache, tmp_path):
    root, m = cache
    out = tmp_path / "tc"
    metrics = train_transcoders(
        root / "acts", out, replace(CFG, jumprelu_export=True), progress=False, log=lambda s: None
    )
    conf = yaml.safe_load((out / "config.yaml").read_text())
    assert conf["model_kind"] == "transcoder_set" and conf["activation"] == "jumprelu" and "k" not in conf
    with safe_open(str(out / "layer_0.safetensors"), "pt") as f:
        assert "activation_function.threshold" in f.keys() and "k" not in f.keys()
    ts = load_transcoder_set(out, lazy_decoder=False)
    ho = tuple(m["split"]["heldout"])
    for layer, lw in enumerate(ts.layers):
        r = metrics["layers"][str(layer)]
        assert lw.activation.kind == "jumprelu"
        assert r["explained_variance"] > r["topk"]["explained_variance"] - 0.03, r
        assert 0.5 * CFG.k < r["l0"] < 1.5 * CFG.k, r
        x = load_rows(root / "acts", layer, "in", ho, m).float()
        y = load_rows(root / "acts", layer, "out", ho, m).float()
        yh = lw.activation(x @ lw.W_enc.T + lw.b_enc) @ lw.W_dec + lw.b_dec + x @ lw.W_skip.T
        ev = 1 - (y - yh).pow(2).sum() / (y - y.mean(0)).pow(2).sum()
        assert abs(ev.item() - r["explained_variance"]) < 1e-3


def test_topk_clt_written_as_jumprelu(cache, tmp_path):
    root, _ = cache
    cfg = replace(CFG, kind="clt", activation="topk", skip=False, jumprelu_export=True, chunk_tokens=2_048)
    metrics = train_transcoders(root / "acts", tmp_path / "tc", cfg, progress=False, log=lambda s: None)
    conf = yaml.safe_load((tmp_path / "tc" / "config.yaml").read_text())
    assert conf["model_kind"] == "cross_layer_transcoder" and conf["activation"] == "jumprelu"
    assert load_transcoder_set(tmp_path / "tc").layers[1].activation.kind == "jumprelu"
    assert all(0.5 * CFG.k < r["l0"] < 1.5 * CFG.k for r in metrics["layers"].values())


def test_cli_budgets_write_what_circuit_tracer_loads():
    assert all(config_for(b).jumprelu_export for b in ("small", "default", "large"))
    assert not config_for("tiny").jumprelu_export  # CI's smoke run keeps TopK (refused there by name)


def test_a_topk_set_is_made_jumprelu_in_place(cache, tmp_path):
    from circuitboard.training.train import calibrate_set

    root, _ = cache
    out = tmp_path / "tc"
    before = train_transcoders(root / "acts", out, CFG, progress=False, log=lambda s: None)
    after = calibrate_set(out, root / "acts", log=lambda s: None)
    conf = yaml.safe_load((out / "config.yaml").read_text())
    assert conf["model_kind"] == "transcoder_set" and conf["activation"] == "jumprelu" and "k" not in conf
    assert conf["training"]["jumprelu_export"] and sorted(p.name for p in tmp_path.iterdir()) == ["tc"]
    for layer in ("0", "1"):
        r = after["layers"][layer]
        assert r["topk"] == before["layers"][layer]
        assert r["explained_variance"] > r["topk"]["explained_variance"] - 0.03
    assert load_transcoder_set(out).layers[0].activation.kind == "jumprelu"


def test_cli_flag_keeps_topk():
    from circuitboard.cli import build_parser
    from circuitboard.cli.training import train_config

    parse = build_parser().parse_args
    assert train_config(parse(["train-transcoders", "--budget", "small"])).jumprelu_export
    assert not train_config(parse(["train-transcoders", "--budget", "small", "--no-jumprelu-export"])).jumprelu_export
    assert train_config(parse(["train-transcoders", "--budget", "tiny", "--jumprelu-export"])).jumprelu_export
