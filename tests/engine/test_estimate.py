"""The trace estimator: its shape of a trace, monotone growth, the refusal message, and a sanity bound against a
measured trace of a tiny model."""

from __future__ import annotations

import json

import pytest

from circuitboard.engine.estimate import (
    CALIBRATION,
    TraceDims,
    TraceLimits,
    engine_dims,
    estimate_trace,
    set_l0,
    trace_shape,
)
from circuitboard.engine.session import Engine
from circuitboard.engine.transcoders import random_transcoder_set
from circuitboard.engine.types import AttributionParams, EngineInfo

# The default preset's dimensions (Gemma 3 270M, the project's TopK-32 PLTs with skip), written out so the
# test needs no weights.
GEMMA = TraceDims(
    n_layers=18,
    d_model=640,
    d_transcoder=4096,
    n_heads=4,
    n_kv_heads=1,
    head_dim=256,
    vocab_size=262144,
    n_params=268_098_176,
    model_bytes=1_072_392_704,
    transcoder_bytes=218_575_872,
    skip=True,
    l0=32.0,
    l0_peak=32.0,
)
DEFAULT = AttributionParams()


@pytest.fixture(scope="module")
def tiny_engine(tiny_models):
    model, tok, _ = tiny_models("llama")
    tset = random_transcoder_set(3, 64, 128, kind="topk", k=6, seed=0)
    return Engine(model, tok, tset, model_name="tiny-llama")


def test_shape_follows_the_attribution_layout():
    shape = trace_shape(33, DEFAULT, GEMMA, "dense")
    assert shape.n_active == 32 * 18 * 32  # position 0 carries no features
    assert shape.n_selected == 2000 and not shape.every_feature
    assert shape.n_cols == shape.n_active + 18 * 33 + 33
    assert shape.n_nodes == 2000 + 18 * 33 + 33 + DEFAULT.max_n_logits
    assert shape.stored == shape.n_cols and shape.graph_rows == shape.n_nodes
    assert shape.chunk == 4 * DEFAULT.batch_size and shape.batch == 256  # one greedy refresh, one batch
    streamed = trace_shape(33, DEFAULT, GEMMA, "streamed")
    assert streamed.graph_rows == 2000 + DEFAULT.max_n_logits  # errors and tokens have no rows
    assert 18 * 33 + 33 < streamed.stored <= shape.n_cols
    long = trace_shape(1024, DEFAULT, GEMMA, "streamed")
    assert long.batch == DEFAULT.batch_size and long.reach == 0.5  # 128 MB batches of 64 rows
    # Row store: half the lower layers' columns, over half the positions plus half a band of 64 (of 1,024).
    assert long.stored == pytest.approx(0.5 * (0.5 + 32 / 1024) * long.n_active + 19 * 1024)
    small = trace_shape(3, DEFAULT, GEMMA, "streamed")
    assert small.every_feature and small.n_selected == small.n_active == 32 * 18 * 2


@pytest.mark.parametrize("adjacency", ["dense", "streamed"])
def test_monotone_in_tokens_and_nodes(adjacency):
    calib = CALIBRATION.model_copy(update={"adjacency": adjacency})
    by_tokens = [estimate_trace(n, DEFAULT, GEMMA, calib, gflops=100.0) for n in (2, 8, 32, 128, 256, 1024, 4096)]
    for a, b in zip(by_tokens, by_tokens[1:], strict=False):
        assert a.seconds < b.seconds and a.peak_bytes < b.peak_bytes, (a, b)
    nodes = [AttributionParams(max_feature_nodes=n) for n in (10, 100, 1000, 5000, 10_000)]
    by_nodes = [estimate_trace(256, p, GEMMA, calib, gflops=100.0) for p in nodes]
    for a, b in zip(by_nodes, by_nodes[1:], strict=False):
        assert a.seconds < b.seconds and a.peak_bytes <= b.peak_bytes, (a, b)


def test_time_scales_with_the_rate_and_streaming_saves_memory():
    slow = estimate_trace(256, DEFAULT, GEMMA, gflops=50.0, probe_s=4e-3)
    fast = estimate_trace(256, DEFAULT, GEMMA, gflops=200.0, probe_s=1e-3)
    assert fast.seconds == pytest.approx(slow.seconds / 4, rel=1e-6)
    assert fast.peak_bytes == slow.peak_bytes
    dense = estimate_trace(1024, DEFAULT, GEMMA, CALIBRATION.model_copy(update={"adjacency": "dense"}), 100.0)
    streamed = estimate_trace(1024, DEFAULT, GEMMA, CALIBRATION.model_copy(update={"adjacency": "streamed"}), 100.0)
    assert streamed.peak_bytes < dense.peak_bytes
    # The row store keeps what each run of rows reads of the active features' columns; pruning reads the
    # feature and logit rows only.
    shape = trace_shape(1024, DEFAULT, GEMMA, "streamed")
    saved = dense.bytes_by_term["rows_phase"] - streamed.bytes_by_term["rows_phase"]
    assert saved == pytest.approx(4 * 2000 * (shape.n_cols - shape.stored), rel=1e-3)
    assert streamed.bytes_by_term["prune_phase"] == 4 * 4 * shape.graph_rows * shape.n_nodes


def test_refusal_names_the_prompt_and_the_limits():
    est = estimate_trace(1900, DEFAULT, GEMMA, gflops=100.0)
    assert est.refusal(TraceLimits(seconds=est.seconds * 2, bytes=est.peak_bytes * 2)) is None
    msg = est.refusal(TraceLimits(seconds=15 * 60, bytes=8 * 2**30))
    assert msg is not None and msg.startswith("prompt: 1,900 tokens would take ~")
    assert "this server allows 15 min and 8.0 GiB" in msg and "max_feature_nodes" in msg
    assert est.refusal(TraceLimits(seconds=est.seconds * 2, bytes=est.peak_bytes - 1)) is not None


def test_dims_of_an_engine_and_of_bare_info(tiny_engine):
    dims = engine_dims(tiny_engine)
    assert (dims.n_layers, dims.d_model, dims.d_transcoder, dims.l0) == (3, 64, 128, 6.0)
    assert dims.n_params == sum(p.numel() for p in tiny_engine.model.parameters())
    assert dims.model_bytes == 4 * dims.n_params and dims.transcoder_bytes > 0
    info = EngineInfo.model_validate({**tiny_engine.info.model_dump(), "dtype": "bfloat16"})
    rough = TraceDims.from_info(info)
    assert rough.element_bytes == 2 and rough.n_layers == 3 and rough.l0 <= rough.d_transcoder


def test_l0_from_topk_metrics_or_default(tmp_path):
    assert set_l0("topk", 32, None) == 32.0
    (tmp_path / "metrics.json").write_text(json.dumps({"layers": {"0": {"l0": 10.0}, "1": {"l0": 30.0}}}))
    assert set_l0("jumprelu", None, str(tmp_path)) == 20.0
    assert set_l0("jumprelu", None, str(tmp_path / "config.yaml")) == 20.0
    assert set_l0("relu", None, str(tmp_path / "nowhere" / "config.yaml")) == 100.0


def test_tiny_trace_has_the_predicted_shape(tiny_engine):
    """Predicted active features match the trace (TopK: at most k per token and layer). Predicted time and
    memory against measured ones are bench/estimate.py's figures, not a unit test's: they depend on the load."""
    prompt = "the cat sat on the mat and the dog sat on the log " * 3
    params = AttributionParams(max_feature_nodes=200)
    n_tokens = len(tiny_engine.encode(prompt))
    shape = trace_shape(n_tokens, params, engine_dims(tiny_engine), CALIBRATION.adjacency)
    graph = tiny_engine.attribute_graph(prompt, params)
    active = graph.info["n_active_features"]
    assert 0.8 * shape.n_active <= active <= shape.n_active
    est = estimate_trace(n_tokens, params, engine_dims(tiny_engine), gflops=100.0, probe_s=1e-4)
    assert est.seconds > 0 and est.peak_bytes > 0
