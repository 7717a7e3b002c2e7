"""Tracing back from a feature: the target row is checked against perturbation of the frozen model, as the
logit targets' rows are in test_attribution.py."""

import pytest
import torch

from circuitboard.devtools.tiny import ARCHITECTURES
from circuitboard.engine.attribution import attribute, feature_targets
from circuitboard.engine.replacement import build_context, frozen_forward
from circuitboard.engine.transcoders import random_transcoder_set

PROMPT = "The capital of Texas is Austin, and Dallas is in"
KINDS = [dict(kind="relu"), dict(kind="jumprelu", skip=True), dict(kind="relu", cross_layer=True)]


def _target_feature(adapter, tset, ids) -> tuple[int, int, int]:
    """An active feature of the last layer, a few positions before the end (so later positions are not sources)."""
    ctx = build_context(adapter, tset, ids)
    layer, pos = adapter.n_layers - 1, ctx.n_pos - 3
    index = int(ctx.acts[layer][pos].argmax())
    assert ctx.acts[layer][pos, index] > 0
    return layer, index, pos


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("tc", KINDS, ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_feature_target_row_equals_perturbation(tiny_models, arch, tc):
    _, tok, adapter = tiny_models(arch)
    ids = tok(PROMPT, return_tensors="pt").input_ids[0]
    tset = random_transcoder_set(adapter.n_layers, adapter.d_model, 96, seed=1, **tc)
    target = _target_feature(adapter, tset, ids)
    graph = attribute(
        adapter, tset, ids, targets_fn=lambda ctx: feature_targets(adapter, tset, ctx, [target]), batch_size=7
    )
    assert graph.logit_tokens == [adapter.vocab_size] and graph.logit_strings == [
        f"feature {target[0]}_{target[1]} at {target[2]}"
    ]
    ctx = build_context(adapter, tset, ids)
    base = frozen_forward(adapter, tset, ctx)
    L, P = adapter.n_layers, ctx.n_pos
    t_layer, t_index, t_pos = target
    row = graph.adjacency_matrix[graph.logit_slice][0]

    def check(col: int, perturbed) -> float:
        expected = perturbed.pre_acts[t_layer][t_pos, t_index] - base.pre_acts[t_layer][t_pos, t_index]
        assert abs(float(row[col] - expected)) < 1e-3 * max(abs(float(expected)), 1e-2) + 1e-5, (
            col,
            row[col],
            expected,
        )
        return abs(float(expected))

    moved = 0.0
    sel = graph.active_features[graph.selected_features]
    for i in range(graph.n_features):
        layer, pos, feat = sel[i].tolist()
        if layer >= t_layer or pos > t_pos:
            assert row[i] == 0  # neither later layers nor later positions feed the target
            continue
        add = torch.zeros(L, P, adapter.d_model)
        rows = tset.decoder_rows(layer, torch.tensor([feat]))[0]
        for k, out_layer in enumerate(tset.output_layers(layer)):
            add[out_layer, pos] += graph.activation_values[graph.selected_features[i]] * rows[k]
        moved += check(i, frozen_forward(adapter, tset, ctx, mlp_add=add))
    for pos in (1, t_pos):
        emb = ctx.embeddings.clone()
        emb[pos] *= 2
        moved += check(graph.token_slice.start + pos, frozen_forward(adapter, tset, ctx, embeddings=emb))
    add = torch.zeros(L, P, adapter.d_model)
    add[0, t_pos] = ctx.errors[0, t_pos]
    moved += check(graph.error_slice.start + t_pos, frozen_forward(adapter, tset, ctx, mlp_add=add))
    assert moved > 1e-3, "perturbations moved nothing: the check would pass vacuously"


def test_feature_targets_outside_the_prompt_are_refused(tiny_models):
    _, tok, adapter = tiny_models("llama")
    ids = tok(PROMPT, return_tensors="pt").input_ids[0]
    tset = random_transcoder_set(adapter.n_layers, adapter.d_model, 96, seed=1)
    ctx = build_context(adapter, tset, ids)
    for bad in [(3, 0, 2), (0, 96, 2), (0, 1, 0), (0, 1, ctx.n_pos)]:
        with pytest.raises(ValueError, match=r"target_features\.0"):
            feature_targets(adapter, tset, ctx, [bad])
