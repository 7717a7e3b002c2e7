"""Validation by intervention on the planted model (tests/engine/planted.py): predicted against measured."""

from __future__ import annotations

import pytest
import torch
from planted import PROMPT, TARGETS, planted_engine

from circuitboard.engine.export import graph_to_json, node_ids
from circuitboard.engine.feature_edits import FeatureEdits, model_readout
from circuitboard.engine.graph import PruneResult
from circuitboard.engine.interventions import run_intervention
from circuitboard.engine.replacement import build_context, final_logits
from circuitboard.engine.types import AttributionParams, FeatureIntervention, InterventionRequest
from circuitboard.engine.validation import ValidateRequest, ValidationInputError


def complete_graph(engine, prompt: str = PROMPT) -> dict:
    """The graph JSON of every node and every non-zero edge (no pruning): the complete linear graph."""
    graph = engine.attribute_graph(prompt, AttributionParams(target_tokens=list(TARGETS)))
    N = graph.n_nodes
    keep = PruneResult(torch.ones(N, dtype=torch.bool), graph.rows != 0, torch.zeros(N))
    info = {"model": engine.model_name, "transcoders": engine.tset.name, "input_token_ids": graph.input_tokens.tolist()}
    return graph_to_json(graph, keep, slug="complete", scan="planted", node_threshold=1.0, info=info) | {
        "ids": node_ids(graph)
    }


def supernodes(planted, graph: dict) -> list[list[str]]:
    last = len(graph["metadata"]["prompt_tokens"]) - 1
    return [[f"group {k}", *(f"{planted.group_layer}_{f}_{last}" for f in g)] for k, g in enumerate(planted.groups)]


def _close(got: list, want: list, rtol: float) -> None:
    got_t = torch.tensor([c.logit for c in got])
    want_t = torch.tensor([c.logit for c in want])
    scale = want_t.abs().max()
    assert scale > 1e-2, "the edit moved nothing: the check would pass vacuously"
    assert (got_t - want_t).abs().max() <= rtol * scale, (got_t, want_t)


@pytest.fixture(scope="module")
def linear_case():
    planted = planted_engine(group_layer=0, linear_downstream=True)
    graph = complete_graph(planted.engine)
    req = ValidateRequest(supernodes=supernodes(planted, graph), modes=["frozen", "free"])
    return planted, graph, planted.engine.validate(graph, req)


def test_frozen_measurement_equals_the_linear_graph(linear_case):
    """Frozen attention and norms, features in their linear range: measured = predicted, for every edit."""
    _, _, result = linear_case
    assert [g.label for g in result.groups] == ["group 0", "group 1"]
    assert len(result.targets) == 2
    for group in result.groups:
        for effect in [group.ablate, *group.steer.values()]:
            _close(effect.measured["frozen"], effect.predicted, rtol=1e-3)
            assert effect.measured_effect["frozen"] == pytest.approx(effect.predicted_effect, rel=1e-3)
    for effect in (result.circuit.sufficiency, result.circuit.necessity):
        _close(effect.measured["frozen"], effect.predicted, rtol=1e-3)
    # Steering is linear in the graph: x2 undoes what ablation does, x-1 does it twice.
    ablate, steer = result.groups[0].ablate, result.groups[0].steer
    assert steer["x2"].predicted_effect == pytest.approx(-ablate.predicted_effect)
    assert steer["x-1"].predicted_effect == pytest.approx(2 * ablate.predicted_effect)
    assert result.measured_mode == "free"


def test_prediction_runs_through_downstream_features(linear_case):
    """The downstream (linear) features carry part of group 0's effect: direct edges alone predict less."""
    planted, graph, result = linear_case
    ids = graph["ids"]
    weights = {(link["source"], link["target"]): link["weight"] for link in graph["links"]}
    group = result.groups[0]
    target = result.targets[0]
    direct = -sum(weights.get((nid, target), 0.0) for nid in group.node_ids)
    predicted = group.ablate.predicted[0].logit
    downstream = [n for n in ids if n.startswith(f"{planted.group_layer + 1}_0_")]
    assert downstream, "the linear downstream features are graph nodes"
    assert abs(predicted - direct) > 1e-2 * abs(direct)


def test_free_attention_differs_by_the_final_norm():
    """A group at the last layer has nothing downstream but the final norm: the model itself (free) then
    differs from the frozen measurement exactly by the norm's rescaling of the edited residual."""
    planted = planted_engine(group_layer=1)
    engine = planted.engine
    graph = complete_graph(engine)
    req = ValidateRequest(supernodes=supernodes(planted, graph)[:1], modes=["frozen", "free"])
    effect = engine.validate(graph, req).groups[0].ablate
    ad, tset = engine.adapter, engine.tset
    ctx = build_context(ad, tset, engine.encode(PROMPT))
    last = ctx.n_pos - 1
    feats = torch.tensor(planted.groups[0])
    delta = -(ctx.acts[1][last, feats, None] * tset.decoder_rows(1, feats)[:, 0]).sum(0)
    x = ctx.resid_final[-1:] + delta

    def demeaned(resid, scale):
        raw = final_logits(ad, resid, scale, softcap=False)[0]
        return raw - raw.mean()

    clean = demeaned(ctx.resid_final[-1:], ctx.scale_final[-1:])
    frozen = demeaned(x, ctx.scale_final[-1:]) - clean
    free = demeaned(x, ad.final_norm.scale(x)) - clean
    tokens = [c.token_id for c in effect.predicted]
    assert torch.allclose(torch.tensor([c.logit for c in effect.measured["frozen"]]), frozen[tokens], atol=1e-4)
    assert torch.allclose(torch.tensor([c.logit for c in effect.measured["free"]]), free[tokens], atol=1e-4)
    assert (free - frozen)[tokens].abs().max() > 1e-2  # the norm's rescaling is not negligible here
    _close(effect.measured["frozen"], effect.predicted, rtol=1e-3)


def test_free_mode_is_the_interventions_model():
    """Ablating a group in the free mode is what /api/interventions does with the same features zeroed."""
    planted = planted_engine(group_layer=0, linear_downstream=True)
    engine = planted.engine
    ids = engine.encode(PROMPT)
    last = len(ids) - 1
    ctx = build_context(engine.adapter, engine.tset, ids)
    group = planted.groups[1]
    edits = FeatureEdits(pinned=[(0, last, f) for f in group], factors=[0.0] * len(group))
    probs = model_readout(engine.adapter, engine.tset, ctx, edits).probs
    items = [FeatureIntervention(layer=0, feature=f, position=last, mode="zero") for f in group]
    req = InterventionRequest(prompt=PROMPT, interventions=items, n_tokens=0, top_k=5)
    after = run_intervention(engine.adapter, engine.tset, engine.tokenizer, ids, req).after.top
    assert torch.allclose(probs[[t.id for t in after]], torch.tensor([t.prob for t in after]), atol=1e-5)


def test_inputs_the_graph_does_not_have(linear_case):
    planted, graph, _ = linear_case
    engine = planted.engine
    with pytest.raises(ValidationInputError, match=r"supernodes\.0\.1"):
        engine.validate(graph, ValidateRequest(supernodes=[["x", "E_1_0"]]))
    with pytest.raises(ValidationInputError, match="targets"):
        engine.validate(graph, ValidateRequest(supernodes=supernodes(planted, graph), targets=["nope"]))
    with pytest.raises(ValueError, match="tokenise"):
        engine.validate(
            {**graph, "metadata": {**graph["metadata"], "prompt": "The capital"}},
            ValidateRequest(supernodes=supernodes(planted, graph)),
        )


KINDS = [
    dict(kind="relu"),
    dict(kind="jumprelu", skip=True),
    dict(kind="relu", cross_layer=True),
    dict(kind="jumprelu", cross_layer=True, skip=True),
]


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt2"])
@pytest.mark.parametrize("tc", KINDS, ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_readouts_of_no_edit_are_the_models(tiny_models, arch, tc):
    """With nothing edited, the frozen readout is the replacement model's and the free one the model's own."""
    from circuitboard.engine.feature_edits import replacement_readout
    from circuitboard.engine.replacement import frozen_forward
    from circuitboard.engine.transcoders import random_transcoder_set

    model, tok, adapter = tiny_models(arch)
    ids = tok(PROMPT, return_tensors="pt").input_ids[0]
    tset = random_transcoder_set(adapter.n_layers, adapter.d_model, 96, seed=1, **tc)
    ctx = build_context(adapter, tset, ids)
    frozen = replacement_readout(adapter, tset, ctx, FeatureEdits())
    assert torch.allclose(frozen.logits, frozen_forward(adapter, tset, ctx).logits[-1], atol=1e-4)
    free = model_readout(adapter, tset, ctx, FeatureEdits())
    with torch.no_grad():
        ref = model(input_ids=ids[None]).logits[0, -1]
    assert torch.allclose(free.probs, ref.softmax(-1), atol=1e-5)
    assert torch.allclose(free.logits, frozen.logits, atol=1e-3)  # the replacement reproduces the model


@pytest.mark.parametrize("tc", KINDS, ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_frozen_steer_matches_prediction_on_random_transcoders(tiny_models, tc):
    """A small steer of one feature on random (CLT, skip, JumpReLU) transcoders: frozen measured = predicted."""
    from circuitboard.engine.attribution import attribute, salient_targets
    from circuitboard.engine.feature_edits import replacement_readout
    from circuitboard.engine.linkgraph import LinkGraph
    from circuitboard.engine.transcoders import random_transcoder_set
    from circuitboard.engine.validation import LinearPrediction

    _, tok, adapter = tiny_models("llama")
    ids = tok(PROMPT, return_tensors="pt").input_ids[0]
    tset = random_transcoder_set(adapter.n_layers, adapter.d_model, 96, seed=1, **tc)
    graph = attribute(adapter, tset, ids, targets_fn=lambda ctx: salient_targets(adapter, ctx, 3, 0.99, str))
    N = graph.n_nodes
    keep = PruneResult(torch.ones(N, dtype=torch.bool), graph.rows != 0, torch.zeros(N))
    linked = LinkGraph.from_json(graph_to_json(graph, keep, slug="g", scan="s", node_threshold=1.0))
    ctx = build_context(adapter, tset, ids)
    clean = replacement_readout(adapter, tset, ctx, FeatureEdits())
    layer, pos, feat = graph.active_features[graph.selected_features[0]].tolist()
    factor = 1.001  # small: no downstream feature crosses its threshold (at 1.01 a JumpReLU one does)
    steered = replacement_readout(adapter, tset, ctx, FeatureEdits(pinned=[(layer, pos, feat)], factors=[factor]))
    node = linked.ids.index(f"{layer}_{feat}_{pos}")
    predicted = LinearPrediction(linked).changes({node: factor - 1})[linked.of_kind("logit")]
    measured = (steered.logits - clean.logits)[graph.logit_tokens].double()
    scale = float(predicted.abs().max())
    assert scale > 1e-5
    # float32 logits of size ~10 carry ~1e-6 of noise, a few percent of these changes
    assert (measured - predicted).abs().max() <= 5e-2 * scale, (measured, predicted)
