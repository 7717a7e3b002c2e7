"""Graph diff: positions aligned by tokens, features matched by (layer, index)."""

from __future__ import annotations

import pytest
import torch

from circuitboard.engine.diff import GraphsDiffer, align_positions, diff_graphs
from circuitboard.engine.export import graph_to_json
from circuitboard.engine.graph import PruneResult
from circuitboard.engine.linkgraph import LinkGraph
from circuitboard.engine.session import Engine
from circuitboard.engine.transcoders import random_transcoder_set
from circuitboard.engine.types import AttributionParams

PROMPT_A = "The capital of Texas is"
PROMPT_B = "The capital of the is"  # one token changed: " Texas" -> " the"


@pytest.fixture(scope="module")
def engine(tiny_models):
    model, tok, adapter = tiny_models("llama")
    tset = random_transcoder_set(adapter.n_layers, adapter.d_model, 96, seed=1)
    return Engine(model, tok, tset, model_name="tiny")


def complete(engine: Engine, prompt: str) -> LinkGraph:
    """Every node and non-zero edge: a diff of pruned graphs would also show what pruning kept on one side."""
    graph = engine.attribute_graph(prompt, AttributionParams(max_n_logits=3))
    N = graph.n_nodes
    keep = PruneResult(torch.ones(N, dtype=torch.bool), graph.rows != 0, torch.zeros(N))
    info = {"model": engine.model_name, "transcoders": engine.tset.name}
    return LinkGraph.from_json(graph_to_json(graph, keep, slug=prompt, scan="tiny", node_threshold=1.0, info=info))


def test_alignment_lines_up_words_of_different_lengths():
    a = ["<bos>", "The", " capital", " of", " D", "all", "as", " is"]
    b = ["<bos>", "The", " capital", " of", " Texas", " is"]
    assert align_positions(a, b) == [(0, 0), (1, 1), (2, 2), (3, 3), (6, 4), (7, 5)]
    assert align_positions(b, a) == [(0, 0), (1, 1), (2, 2), (3, 3), (4, 6), (5, 7)]


def test_diff_with_itself_is_empty(engine):
    g = complete(engine, PROMPT_A)
    d = diff_graphs(g, g)
    assert d.nodes == [] and d.links == []
    assert d.summary.only_a == d.summary.only_b == d.summary.changed == 0
    assert d.summary.shared == g.n_nodes
    full = diff_graphs(g, g, include_shared=True)
    assert len(full.nodes) == g.n_nodes and len(full.links) == len(g.weight)


def test_one_token_changed_shows_that_tokens_features(engine):
    a, b = complete(engine, PROMPT_A), complete(engine, PROMPT_B)
    d = diff_graphs(a, b)
    assert a.prompt_tokens[4] == " Texas" and b.prompt_tokens[4] == " the"
    assert d.alignment == [(p, p) for p in range(len(a.prompt_tokens))]
    changed_pos = 4
    features = [n for n in d.nodes if n.feature_type == "feature"]
    # Attention is causal: nothing before the changed token differs.
    assert all((n.ctx_idx_a if n.ctx_idx_a is not None else n.ctx_idx_b) >= changed_pos for n in features)
    at_a = {a.ids[i] for i in a.of_kind("feature") if int(a.pos[i]) == changed_pos}
    assert at_a, "the changed token has features"
    shown = {n.node_id_a for n in features if n.ctx_idx_a == changed_pos}
    assert at_a <= shown  # every feature of " Texas" is gone or changed in the other prompt
    only = {n.node_id_a for n in features if n.status == "only_a" and n.ctx_idx_a == changed_pos}
    assert only, "some of the token's features do not fire on the other token"
    emb = [n for n in d.nodes if n.feature_type == "embedding"]
    assert [(n.ctx_idx_a, n.status) for n in emb] == [(changed_pos, "changed")]
    # Links between unchanged positions are unchanged.
    pos_of = {n.id: (n.ctx_idx_a, n.ctx_idx_b) for n in diff_graphs(a, b, include_shared=True).nodes}
    for link in d.links:
        ends = [p for p in (*pos_of[link.source], *pos_of[link.target]) if p is not None]
        assert max(ends) >= changed_pos, link
    assert d.summary.only_a + d.summary.changed > 0
    assert [n.change for n in d.nodes] == sorted((n.change for n in d.nodes), reverse=True)


def test_graphs_of_other_models_are_refused(engine):
    g = complete(engine, PROMPT_A)
    other = LinkGraph.from_json({"metadata": {"prompt_tokens": ["x"], "info": {"model": "m2"}}, "nodes": []})
    with pytest.raises(GraphsDiffer, match="different models"):
        diff_graphs(g, other)
