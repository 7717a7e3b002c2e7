"""The opt-in bf16 attribution mode (issue 16): it runs, is labelled, and agrees with fp32 within a loose bound."""

import pytest
import torch

from circuitboard.engine.attribution import attribute, salient_targets
from circuitboard.engine.transcoders import random_transcoder_set
from circuitboard.engine.types import AttributionParams

PROMPT = "The capital of Texas is Austin, and Dallas is in"


def _trace(tiny_models, precision, budget=None, arch="llama"):
    _, tok, adapter = tiny_models(arch)
    ids = tok(PROMPT, return_tensors="pt").input_ids[0]
    tset = random_transcoder_set(adapter.n_layers, adapter.d_model, 96, seed=1, kind="jumprelu", skip=True)
    return attribute(
        adapter,
        tset,
        ids,
        targets_fn=lambda ctx: salient_targets(adapter, ctx, 5, 0.99, str),
        max_feature_nodes=budget,
        batch_size=7,
        compute_batch=7,
        precision=precision,
    )


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
@pytest.mark.parametrize("budget", [None, 30])
def test_bf16_agrees_with_fp32_and_is_labelled(tiny_models, arch, budget):
    exact, reduced = _trace(tiny_models, "fp32", budget, arch), _trace(tiny_models, "bf16", budget, arch)
    assert exact.info["precision"] == "fp32" and reduced.info["precision"] == "bf16"
    assert reduced.rows.dtype == torch.float32  # products in bf16, rows added up and kept in fp32
    # bf16 keeps 8 bits of mantissa: edges agree to a few percent of the largest, the top nodes mostly.
    if torch.equal(exact.selected_features, reduced.selected_features):
        err = (exact.rows - reduced.rows).abs().max() / exact.rows.abs().max()
        assert 0 < err < 0.05, err
    else:  # near-ties in the greedy order can swap a few features
        assert len(set(exact.selected_features.tolist()) & set(reduced.selected_features.tolist())) >= 0.8 * 30


def test_precision_is_a_parameter():
    assert AttributionParams().precision == "fp32"  # fp32 stays the default
    assert AttributionParams(precision="bf16").model_dump()["precision"] == "bf16"  # in the job record
    with pytest.raises(ValueError):
        AttributionParams(precision="fp8")


def test_auto_follows_the_measured_compute_dtype(tiny_models, monkeypatch):
    from circuitboard import precision

    precision.compute_dtype.cache_clear()
    monkeypatch.setenv("CIRCUITBOARD_COMPUTE_DTYPE", "bf16")
    try:
        assert _trace(tiny_models, "auto").info["precision"] == "bf16"
        precision.compute_dtype.cache_clear()
        monkeypatch.setenv("CIRCUITBOARD_COMPUTE_DTYPE", "fp32")
        assert _trace(tiny_models, "auto").info["precision"] == "fp32"
    finally:
        precision.compute_dtype.cache_clear()
