"""Cross-layer transcoders trained on the tiny Llama's activation cache: explained variance must rise, the set
written must load back identically in circuit-tracer's CLT layout, and an interrupted run must resume."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import yaml
from safetensors import safe_open

from circuitboard.data.activations import load_rows
from circuitboard.engine.transcoders import load_transcoder_set, save_transcoder_set
from circuitboard.training.config import TrainConfig, config_for
from circuitboard.training.train import train_transcoders

CFG = TrainConfig(
    kind="clt",
    activation="jumprelu",
    skip=False,
    width=128,
    k=8,
    train_tokens=6_000,
    heldout_tokens=1_500,
    steps_tokens=40_000,
    batch_size=256,
    lr=3e-3,
    warmup_steps=10,
    dead_window=3_000,
    chunk_tokens=2_048,
)


def _quiet(**kw):
    return {"progress": False, "log": lambda s: None, **kw}


@pytest.fixture(scope="module")
def trained(cache, tmp_path_factory):
    root, _ = cache
    out = tmp_path_factory.mktemp("clt") / "tc"
    return out, train_transcoders(root / "acts", out, CFG, model_name="tiny", budget="test", **_quiet())


@pytest.mark.parametrize("activation", ["jumprelu", "topk"])
def test_clt_explained_variance_rises(cache, tmp_path, activation):
    root, _ = cache
    cfg = replace(CFG, activation=activation)
    start = train_transcoders(root / "acts", tmp_path / "a", replace(cfg, steps_tokens=cfg.batch_size), **_quiet())
    end = train_transcoders(root / "acts", tmp_path / "b", cfg, **_quiet())
    for layer in ("0", "1"):
        before, after = start["layers"][layer], end["layers"][layer]
        assert after["explained_variance"] > 0.55, after
        assert after["explained_variance"] > before["explained_variance"] + 0.05, (before, after)
        assert 0 < after["l0"] <= 2 * CFG.k and after["dead_fraction"] < 0.5, after
    assert end["kind"] == "clt" and end["summary"]["train_seconds"] > 0


def test_clt_written_in_circuit_tracers_layout(trained):
    out, _ = trained
    conf = yaml.safe_load((out / "config.yaml").read_text())
    assert conf["model_kind"] == "cross_layer_transcoder" and conf["activation"] == "jumprelu"
    assert conf["feature_input_hook"] == "mlp.hook_in" and conf["feature_output_hook"] == "hook_mlp_out"
    assert conf["scan"] == "tiny/tc" and conf["training"]["kind"] == "clt" and "transcoders" not in conf
    for layer, n_out in ((0, 2), (1, 1)):
        with safe_open(str(out / f"W_enc_{layer}.safetensors"), "pt") as f:
            assert set(f.keys()) == {f"W_enc_{layer}", f"b_enc_{layer}", f"b_dec_{layer}", f"threshold_{layer}"}
            assert f.get_tensor(f"W_enc_{layer}").shape == (128, 64) and f.get_tensor(f"threshold_{layer}").shape == (
                128,
            )
        with safe_open(str(out / f"W_dec_{layer}.safetensors"), "pt") as f:
            assert list(f.keys()) == [f"W_dec_{layer}"] and f.get_tensor(f"W_dec_{layer}").shape == (128, n_out, 64)


def test_clt_loads_back_identically(trained, cache, tmp_path):
    out, metrics = trained
    root, m = cache
    ts = load_transcoder_set(out, lazy_decoder=False)
    assert ts.cross_layer and ts.n_layers == 2 and ts.layers[0].activation.kind == "jumprelu"
    # written again and read back: the same tensors
    again = load_transcoder_set(save_transcoder_set(ts, tmp_path / "again"), lazy_decoder=False)
    for a, b in zip(ts.layers, again.layers, strict=True):
        assert torch.equal(a.W_enc, b.W_enc) and torch.equal(a.W_dec, b.W_dec) and torch.equal(a.b_dec, b.b_dec)
        assert torch.equal(a.activation.threshold, b.activation.threshold)
    # the engine, on raw held-out activations, reproduces the trainer's EV: scales are folded in right
    ho = tuple(m["split"]["heldout"])
    xs = [load_rows(root / "acts", layer, "in", ho, m).float() for layer in range(2)]
    acts = [ts.encode(layer, xs[layer]) for layer in range(2)]
    for layer in range(2):
        y = load_rows(root / "acts", layer, "out", ho, m).float()
        yh = ts.decode(layer, acts, xs[layer])
        ev = 1 - (y - yh).pow(2).sum() / (y - y.mean(0)).pow(2).sum()
        assert abs(ev.item() - metrics["layers"][str(layer)]["explained_variance"]) < 0.01


def test_interrupted_clt_resumes_where_it_stopped(cache, tmp_path):
    root, _ = cache
    cfg = replace(CFG, steps_tokens=20_000)
    calls = {"n": 0}

    def stop_once():
        calls["n"] += 1
        return calls["n"] == 30

    with pytest.raises(KeyboardInterrupt):
        train_transcoders(root / "acts", tmp_path / "tc", cfg, **_quiet(should_stop=stop_once))
    ckpt = tmp_path / "tc.partial" / "clt.ckpt.pt"
    assert ckpt.exists() and not (tmp_path / "tc").exists()
    assert torch.load(ckpt, weights_only=False)["step"] == 30
    resumed = train_transcoders(root / "acts", tmp_path / "tc", cfg, resume=True, **_quiet())
    assert (tmp_path / "tc" / "W_dec_1.safetensors").exists() and not (tmp_path / "tc.partial").exists()
    # batches are a function of the step: the resumed run ends where an uninterrupted one does
    whole = train_transcoders(root / "acts", tmp_path / "whole", cfg, **_quiet())
    for layer in ("0", "1"):
        a, b = resumed["layers"][layer], whole["layers"][layer]
        assert abs(a["explained_variance"] - b["explained_variance"]) < 1e-4 and abs(a["l0"] - b["l0"]) < 1e-3


def test_clt_budgets():
    cfg = config_for("default", "clt", width=512)
    assert cfg.kind == "clt" and cfg.activation == "topk" and cfg.jumprelu_export and not cfg.skip and cfg.width == 512
    assert config_for("default").kind == "plt"
    with pytest.raises(ValueError, match="kind"):
        config_for("default", "sae")
