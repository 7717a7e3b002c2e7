"""Interventions: an ablation moves a logit by exactly its direct edge when everything is frozen; steering works."""

import pytest
import torch

from circuitboard.engine.attribution import attribute, salient_targets
from circuitboard.engine.replacement import build_context, frozen_forward
from circuitboard.engine.transcoders import random_transcoder_set
from circuitboard.engine.types import FeatureIntervention, InterventionRequest

PROMPT = "Michael Jordan plays the sport of"


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
def test_frozen_ablation_moves_logit_by_direct_edge(tiny_models, arch):
    _, tok, adapter = tiny_models(arch)
    ids = tok(PROMPT, return_tensors="pt").input_ids[0]
    tset = random_transcoder_set(adapter.n_layers, adapter.d_model, 96, seed=2, skip=True)
    graph = attribute(adapter, tset, ids, targets_fn=lambda c: salient_targets(adapter, c, 3, 0.99, str))
    ctx = build_context(adapter, tset, ids)
    base = frozen_forward(adapter, tset, ctx)
    # The feature with the largest direct edge into the top logit.
    logit_row = graph.adjacency_matrix[graph.logit_slice.start, : graph.n_features]
    i = int(logit_row.abs().argmax())
    layer, pos, feat = graph.active_features[graph.selected_features[i]].tolist()
    add = torch.zeros(adapter.n_layers, ctx.n_pos, adapter.d_model)
    add[layer, pos] = -ctx.acts[layer][pos, feat] * tset.decoder_rows(layer, torch.tensor([feat]))[0, 0]
    # Freeze every other feature too: with all features constant only the direct path remains... except
    # paths through later features' *inputs*, which frozen_forward keeps constant by construction.
    ablated = frozen_forward(adapter, tset, ctx, mlp_add=add)
    tok_id = graph.logit_tokens[0]
    moved = ablated.logits[-1, tok_id] - base.logits[-1, tok_id]
    assert abs(logit_row[i]) > 1e-4
    assert torch.isclose(moved, -logit_row[i], rtol=1e-3, atol=1e-5)


def test_intervention_changes_output_and_clean_run_is_unchanged(tmp_path):
    from circuitboard.devtools.tiny import build_tiny_checkpoint
    from circuitboard.engine.session import Engine

    engine = Engine.load(*build_tiny_checkpoint(tmp_path, "qwen3"), device="cpu")
    none = engine.intervene(InterventionRequest(prompt=PROMPT, n_tokens=4))
    assert none.before == none.after
    data = engine.attribute(PROMPT, engine_params())
    feat = next(n for n in data["nodes"] if n["feature_type"] == "cross layer transcoder")
    layer, index, pos = map(int, feat["node_id"].split("_"))
    big = engine.intervene(
        InterventionRequest(
            prompt=PROMPT,
            n_tokens=4,
            interventions=[FeatureIntervention(layer=layer, feature=index, position=None, mode="set", value=200.0)],
        )
    )
    assert big.before.top == none.before.top
    assert big.after.top != big.before.top
    frozen = engine.intervene(
        InterventionRequest(
            prompt=PROMPT,
            n_tokens=2,
            freeze_attention=True,
            interventions=[FeatureIntervention(layer=layer, feature=index, position=pos, mode="zero")],
        )
    )
    assert frozen.after.top[0].prob != pytest.approx(frozen.before.top[0].prob, abs=1e-7)
    with pytest.raises(ValueError, match="interventions.0.layer"):
        engine.intervene(InterventionRequest(prompt=PROMPT, interventions=[FeatureIntervention(layer=99, feature=0)]))


def engine_params():
    from circuitboard.engine.types import AttributionParams

    return AttributionParams(max_feature_nodes=30)
