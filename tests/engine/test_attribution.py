"""Attribution is checked against perturbation of the frozen model, on every architecture and transcoder kind."""

import pytest
import torch

from circuitboard.devtools.tiny import ARCHITECTURES
from circuitboard.engine.attribution import attribute, salient_targets
from circuitboard.engine.export import node_ids
from circuitboard.engine.replacement import build_context, frozen_forward
from circuitboard.engine.transcoders import random_transcoder_set

PROMPT = "The capital of Texas is Austin, and Dallas is in"
KINDS = [
    dict(kind="relu"),
    dict(kind="jumprelu", skip=True),
    dict(kind="topk", k=6),
    dict(kind="relu", cross_layer=True),
    dict(kind="jumprelu", cross_layer=True, skip=True),
]


def _graph(tiny_models, arch, tc_kwargs, **kw):
    model, tok, adapter = tiny_models(arch)
    ids = tok(PROMPT, return_tensors="pt").input_ids[0]
    tset = random_transcoder_set(adapter.n_layers, adapter.d_model, 96, seed=1, **tc_kwargs)
    graph = attribute(
        adapter,
        tset,
        ids,
        targets_fn=lambda ctx: salient_targets(adapter, ctx, 5, 0.99, str),
        batch_size=7,
        compute_batch=7,
        **kw,
    )
    return model, adapter, tset, ids, graph


def test_replacement_reproduces_logits(tiny_models):
    for arch in ARCHITECTURES:
        model, tok, adapter = tiny_models(arch)
        ids = tok(PROMPT, return_tensors="pt").input_ids[0]
        tset = random_transcoder_set(adapter.n_layers, adapter.d_model, 96, kind="jumprelu", skip=True)
        ctx = build_context(adapter, tset, ids, all_logits=True)
        for pattern in ctx.patterns:  # causal: no position attends to a later one
            assert pattern.triu(1).abs().max() == 0, arch
            assert torch.allclose(pattern.sum(-1), torch.ones(()), atol=1e-5), arch
        with torch.no_grad():
            ref = model(input_ids=ids[None]).logits[0]
        assert (ctx.logits - ref).abs().max() < 1e-4, arch
        # Frozen forward at zero perturbation is the same model: same demeaned logits.
        frozen = frozen_forward(adapter, tset, ctx)
        raw = ctx.logits if adapter.softcap is None else None
        if raw is not None:
            assert (frozen.logits - (raw - raw.mean(-1, keepdim=True))).abs().max() < 1e-4, arch
        for layer in range(adapter.n_layers):
            acts = tset.layers[layer].activation(frozen.pre_acts[layer])
            acts[0] = 0
            assert torch.allclose(acts, ctx.acts[layer], atol=1e-4), arch


def _check_column(adapter, tset, ids, graph, ctx, base, col, perturbed):
    """Every target's change under one source's perturbation equals that source's adjacency column."""
    A = graph.adjacency_matrix
    sel = graph.active_features[graph.selected_features]
    feat_delta = torch.stack([perturbed.pre_acts[l][p, f] - base.pre_acts[l][p, f] for l, p, f in sel.tolist()])
    last = ctx.n_pos - 1
    logit_delta = perturbed.logits[last, graph.logit_tokens] - base.logits[last, graph.logit_tokens]
    expected = torch.cat([feat_delta, logit_delta])
    got = torch.cat([A[: graph.n_features, col], A[graph.logit_slice, col]])
    scale = expected.abs().max().clamp(min=1e-6)
    # rtol 1e-3 of the column's largest effect, atol 1e-5 for float32 noise in the frozen forward.
    assert (got - expected).abs().max() < 1e-3 * scale + 1e-5, (col, (got - expected).abs().max(), scale)
    return scale


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("tc", KINDS, ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_edges_equal_perturbation(tiny_models, arch, tc):
    model, adapter, tset, ids, graph = _graph(tiny_models, arch, tc)
    ctx = build_context(adapter, tset, ids)
    base = frozen_forward(adapter, tset, ctx)
    L, P = adapter.n_layers, ctx.n_pos
    g = torch.Generator().manual_seed(0)
    nonzero = 0
    # Feature sources: doubling an activation adds activation × decoder row at every layer it writes to.
    for i in torch.randperm(graph.n_features, generator=g)[:12].tolist():
        layer, pos, feat = graph.active_features[graph.selected_features[i]].tolist()
        add = torch.zeros(L, P, adapter.d_model)
        value = graph.activation_values[graph.selected_features[i]]
        rows = tset.decoder_rows(layer, torch.tensor([feat]))[0]
        for k, out_layer in enumerate(tset.output_layers(layer)):
            add[out_layer, pos] += value * rows[k]
        nonzero += (
            _check_column(adapter, tset, ids, graph, ctx, base, i, frozen_forward(adapter, tset, ctx, mlp_add=add))
            > 1e-5
        )
    # Error sources: adding the error vector once more.
    for layer, pos in [(0, P - 1), (L - 1, P - 2), (1, 3)]:
        add = torch.zeros(L, P, adapter.d_model)
        add[layer, pos] = ctx.errors[layer, pos]
        col = graph.error_slice.start + layer * P + pos
        _check_column(adapter, tset, ids, graph, ctx, base, col, frozen_forward(adapter, tset, ctx, mlp_add=add))
    # As circuit-tracer, BOS (position 0) errors are constants, not sources: their columns are empty.
    for layer in range(L):
        assert graph.adjacency_matrix[:, graph.error_slice.start + layer * P].abs().max() == 0
    # Embedding sources.
    for pos in (0, 2, P - 1):
        emb = ctx.embeddings.clone()
        emb[pos] *= 2
        col = graph.token_slice.start + pos
        nonzero += (
            _check_column(adapter, tset, ids, graph, ctx, base, col, frozen_forward(adapter, tset, ctx, embeddings=emb))
            > 1e-5
        )
    assert nonzero >= 3, "perturbations moved nothing: the check would pass vacuously"


def test_greedy_selection_matches_full_rows(tiny_models):
    """Rows computed under a feature budget equal the same rows of the full graph."""
    _, _, _, _, full = _graph(tiny_models, "llama", dict(kind="relu"))
    _, _, _, _, part = _graph(tiny_models, "llama", dict(kind="relu"), max_feature_nodes=20)
    assert part.n_features == 20
    full_ids = {n: i for i, n in enumerate(node_ids(full))}
    part_ids = node_ids(part)
    rows = [full_ids[n] for n in part_ids[:20]]
    cols = [full_ids[n] for n in part_ids]
    assert torch.allclose(part.adjacency_matrix[:20], full.adjacency_matrix[rows][:, cols], atol=1e-5)


def test_logit_targets_read_the_demeaned_unembedding_summed_once(tiny_models):
    """A logit node is logit − mean logit: it reads W_U[t] − mean row, and that mean is summed once per model
    (cached on the adapter) rather than once per trace."""
    _, tok, adapter = tiny_models("llama")
    tset = random_transcoder_set(adapter.n_layers, adapter.d_model, 96, kind="relu")
    ctx = build_context(adapter, tset, tok(PROMPT, return_tensors="pt").input_ids[0])
    targets = salient_targets(adapter, ctx, 3, 0.99, str)
    W_U = adapter.W_U
    assert torch.allclose(targets.read, W_U[targets.token_ids] - W_U.mean(0), atol=1e-6)
    assert adapter.unembed_mean is adapter.unembed_mean
