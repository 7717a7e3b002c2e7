"""The perturbation checks of test_attribution on cross-layer transcoders trained here (issue 17), not random ones:
every sampled adjacency column equals the change of every target when that source is perturbed in the frozen
model."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch
from test_attribution import PROMPT, _check_column

from circuitboard.data.activations import cache_from_texts
from circuitboard.devtools.tiny import _TEXT
from circuitboard.engine.attribution import attribute, salient_targets
from circuitboard.engine.replacement import build_context, frozen_forward
from circuitboard.engine.transcoders import load_transcoder_set
from circuitboard.training.config import TrainConfig
from circuitboard.training.train import train_transcoders

CFG = TrainConfig(
    kind="clt",
    activation="jumprelu",
    skip=False,
    width=96,
    k=8,
    train_tokens=2_400,
    heldout_tokens=460,
    steps_tokens=12_000,
    batch_size=128,
    lr=3e-3,
    warmup_steps=10,
    dead_window=2_000,
    chunk_tokens=1_024,
)


def _trained_clt(model, tok, root, activation):
    words = _TEXT.split()
    rng = random.Random(0)
    texts = [" ".join(rng.sample(words, 30)) for _ in range(150)]
    cache_from_texts(model, tok, texts, root / "acts", n_seqs=125, seq_len=24, n_heldout=20, model_name="tiny")
    cfg = replace(CFG, activation=activation)
    train_transcoders(root / "acts", root / "clt", cfg, model_name="tiny", progress=False, log=lambda s: None)
    return load_transcoder_set(root / "clt", lazy_decoder=False)


@pytest.mark.parametrize(("arch", "activation"), [("llama", "jumprelu"), ("gemma3", "jumprelu"), ("llama", "topk")])
def test_edges_of_a_trained_clt_equal_perturbation(tiny_models, tmp_path, arch, activation):
    model, tok, adapter = tiny_models(arch)
    tset = _trained_clt(model, tok, tmp_path, activation)
    assert tset.cross_layer and tset.n_layers == adapter.n_layers
    ids = tok(PROMPT, return_tensors="pt").input_ids[0]
    graph = attribute(
        adapter,
        tset,
        ids,
        targets_fn=lambda ctx: salient_targets(adapter, ctx, 5, 0.99, str),
        batch_size=7,
        compute_batch=7,
    )
    ctx = build_context(adapter, tset, ids)
    base = frozen_forward(adapter, tset, ctx)
    L, P = adapter.n_layers, ctx.n_pos
    # trained features write into later layers: the checks below exercise the cross-layer decoders
    assert any(tset.layers[0].W_dec[:, j].abs().max() > 0 for j in range(1, L))
    nonzero = 0
    g = torch.Generator().manual_seed(0)
    for i in torch.randperm(graph.n_features, generator=g)[:12].tolist():
        layer, pos, feat = graph.active_features[graph.selected_features[i]].tolist()
        add = torch.zeros(L, P, adapter.d_model)
        value = graph.activation_values[graph.selected_features[i]]
        rows = tset.decoder_rows(layer, torch.tensor([feat]))[0]
        for k, out_layer in enumerate(tset.output_layers(layer)):
            add[out_layer, pos] += value * rows[k]
        perturbed = frozen_forward(adapter, tset, ctx, mlp_add=add)
        nonzero += _check_column(adapter, tset, ids, graph, ctx, base, i, perturbed) > 1e-5
    for layer, pos in [(0, P - 1), (L - 1, P - 2), (1, 3)]:
        add = torch.zeros(L, P, adapter.d_model)
        add[layer, pos] = ctx.errors[layer, pos]
        col = graph.error_slice.start + layer * P + pos
        _check_column(adapter, tset, ids, graph, ctx, base, col, frozen_forward(adapter, tset, ctx, mlp_add=add))
    for pos in (0, 2, P - 1):
        emb = ctx.embeddings.clone()
        emb[pos] *= 2
        col = graph.token_slice.start + pos
        perturbed = frozen_forward(adapter, tset, ctx, embeddings=emb)
        nonzero += _check_column(adapter, tset, ids, graph, ctx, base, col, perturbed) > 1e-5
    assert graph.n_features > 10 and nonzero >= 3, "perturbations moved nothing: the check would pass vacuously"
