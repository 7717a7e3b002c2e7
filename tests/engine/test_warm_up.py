"""The loader's warm-up forward: kept for long-lived processes (the server), skipped by the one-shot CLI."""

import argparse

import pytest
import torch

from circuitboard.devtools.tiny import build_tiny_checkpoint
from circuitboard.engine.session import Engine


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("warm"), "llama")


def _forwards_during_load(monkeypatch, tiny, **kw) -> int:
    """How many whole-model forwards Engine.load runs (counted on the transformers model class)."""
    calls = []
    model_cls = type(Engine.load(*tiny, device="cpu").model)
    real = model_cls.forward

    def counting(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(model_cls, "forward", counting)
    Engine.load(*tiny, device="cpu", **kw)
    return len(calls)


def test_library_load_warms_up_once(monkeypatch, tiny):
    assert _forwards_during_load(monkeypatch, tiny) == 1


def test_load_without_warm_up_runs_no_forward_and_traces_the_same(monkeypatch, tiny):
    assert _forwards_during_load(monkeypatch, tiny, warm_up=False) == 0
    from circuitboard.engine.types import AttributionParams

    params = AttributionParams(max_feature_nodes=50)
    warm = Engine.load(*tiny, device="cpu").attribute_graph("The quick brown fox", params)
    cold = Engine.load(*tiny, device="cpu", warm_up=False).attribute_graph("The quick brown fox", params)
    assert torch.equal(warm.adjacency_matrix, cold.adjacency_matrix)


def test_cli_trace_loads_without_warm_up(monkeypatch, tiny):
    from circuitboard.cli import trace

    seen = {}
    monkeypatch.setattr(Engine, "load", classmethod(lambda cls, *a, **k: seen.update(k)))
    model_dir, tc_dir = tiny
    trace._load_engine(argparse.Namespace(model=str(model_dir), transcoders=str(tc_dir), device="cpu", dtype="float32"))
    assert seen["warm_up"] is False
