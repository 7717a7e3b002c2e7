"""`bench/transcoders.py --compare` end to end on a tiny model (issue 17): a per-layer and a cross-layer set
trained here on its activation cache, an atlas for the first, the prompt set's first prompts; every figure is
printed and kept."""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import replace

import pytest
from training_text import make_text

from circuitboard.atlas.build import build_atlas
from circuitboard.config import REPO_ROOT
from circuitboard.data.activations import cache_from_texts, load_cache_model
from circuitboard.devtools.tiny import build_tiny_checkpoint
from circuitboard.training.config import TrainConfig
from circuitboard.training.train import train_transcoders

TINY = TrainConfig(
    width=128,
    k=8,
    train_tokens=4_000,
    heldout_tokens=900,
    steps_tokens=12_000,
    batch_size=128,
    lr=3e-3,
    warmup_steps=10,
    dead_window=2_000,
    chunk_tokens=2_048,
)


def _bench():
    spec = importlib.util.spec_from_file_location("bench_transcoders", REPO_ROOT / "bench" / "transcoders.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    model_dir, _ = build_tiny_checkpoint(root, "llama")
    model, tok = load_cache_model(model_dir)
    cache_from_texts(model, tok, make_text(1), root / "acts", n_seqs=200, seq_len=32, n_heldout=30, model_name="tiny")
    quiet = {"progress": False, "log": lambda s: None}
    train_transcoders(root / "acts", root / "plt", TINY, model_name="tiny", **quiet)
    clt = replace(TINY, kind="clt", activation="jumprelu", skip=False)
    train_transcoders(root / "acts", root / "clt", clt, model_name="tiny", **quiet)
    build_atlas(model_dir, root / "plt", root / "acts", root / "plt" / "atlas.sqlite", progress=False)
    return root, model_dir


def test_compare_prints_every_figure(tiny_sets, capsys):
    root, model_dir = tiny_sets
    out = root / "compare.json"
    sets = f"PLT default={root / 'plt'},CLT={root / 'clt'},missing={root / 'nope'}"
    argv = ["--compare", "--sets", sets, "--model", str(model_dir), "--cache", str(root / "acts")]
    argv += ["--limit", "4", "--max-feature-nodes", "40", "--json", str(out)]
    assert _bench().main(argv) == 0
    text = capsys.readouterr().out
    assert "held-out EV per layer" in text and "held-out NMSE per layer" in text and "missing: no set" in text
    results = {r["name"]: r for r in json.loads(out.read_text())}
    assert set(results) == {"PLT default", "CLT"}
    assert results["CLT"]["kind"] == "clt" and results["PLT default"]["kind"] == "plt"
    for r in results.values():
        assert len(r["layers"]) == 3 and len(r["graphs"]) == 4 and r["train_seconds"] > 0
        for row in r["layers"]:
            assert 0.3 < row["explained_variance"] <= 1 and 0 <= row["nmse"] < 1 and row["l0"] > 0
        assert math.isfinite(r["kl"]) and r["kl"] >= 0
        for g in r["graphs"]:
            assert 0 < g["replacement"] <= 1 and 0 < g["completeness"] <= 1
    labels = results["PLT default"]["labels"]  # the set with an atlas
    assert labels is not None and results["CLT"]["labels"] is None
    for group in labels.values():
        assert group["features"] > 0 and 0 <= group["read_old"] <= group["read_new"] <= 1
        assert 0 <= group["write_old"] <= group["write_new"] <= 1


def test_label_input_share_counts_the_mass_on_the_named_tokens(tiny_sets):
    """The input-share proxy on a feature whose activation is each row's input norm: the share it reports is the
    norm mass on the rows whose own token (BOS dropped, as the cache's rows) the label names."""
    import sys

    import numpy as np
    import torch

    from circuitboard.data.activations import load_rows, open_tokens, read_manifest

    root, _ = tiny_sets
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    import quality

    class NormFeature:  # feature 0 fires with the input's norm, feature 1 never
        d_transcoder = 2

        def encode(self, layer, x):
            return torch.stack([x.norm(dim=1), torch.zeros(len(x))], 1)

    cache = root / "acts"
    m = read_manifest(cache)
    tokens, rows = quality._heldout_tokens(cache, 20)
    x = load_rows(cache, 1, "in", rows, m).float()
    assert len(tokens) == len(x)
    common = int(torch.mode(tokens).values)
    named = {"old": torch.tensor([[common, -1, -1], [-1, -1, -1]]), "new": torch.tensor([[-1, -1, -1]] * 2)}
    shares = quality._heldout_shares(NormFeature(), 1, cache, rows, tokens, named)
    own = np.asarray(open_tokens(cache, m)[rows[0] : rows[1], 1:]).reshape(-1) == common
    expect = x.norm(dim=1)[torch.from_numpy(own)].sum() / x.norm(dim=1).sum()
    assert 0 < expect < 1 and abs(float(shares["read_old"][0]) - float(expect)) < 1e-6
    assert float(shares["read_new"][0]) == 0.0 and shares["live"].tolist() == [True, False]
