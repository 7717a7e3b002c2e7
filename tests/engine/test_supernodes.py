"""Suggested supernodes recover the groups planted in a tiny model (tests/engine/planted.py)."""

from __future__ import annotations

from math import comb

import pytest
import torch
from planted import PROMPT, TARGETS, planted_engine

from circuitboard.engine.linkgraph import LinkGraph
from circuitboard.engine.supernodes import (
    Evidence,
    InfluenceFlow,
    SuggestRequest,
    candidate_nodes,
    decoder_directions,
    propose_label,
    suggest,
)
from circuitboard.engine.types import AttributionParams


def adjusted_rand_index(a: list[int], b: list[int]) -> float:
    """Hubert & Arabie's adjusted Rand index of two labelings of the same items."""
    n = len(a)
    pairs = {}
    for x, y in zip(a, b, strict=True):
        pairs[(x, y)] = pairs.get((x, y), 0) + 1
    rows: dict[int, int] = {}
    cols: dict[int, int] = {}
    for (x, y), c in pairs.items():
        rows[x] = rows.get(x, 0) + c
        cols[y] = cols.get(y, 0) + c
    index = sum(comb(c, 2) for c in pairs.values())
    row_sum, col_sum = sum(comb(c, 2) for c in rows.values()), sum(comb(c, 2) for c in cols.values())
    expected = row_sum * col_sum / comb(n, 2)
    top = (row_sum + col_sum) / 2
    return 1.0 if top == expected else (index - expected) / (top - expected)


@pytest.fixture(scope="module", params=[0, 1, 2], ids=lambda s: f"seed{s}")
def planted_graph(request):
    planted = planted_engine(distractors=True, seed=request.param)
    params = AttributionParams(target_tokens=list(TARGETS), node_threshold=1.0)
    return planted, LinkGraph.from_json(planted.engine.attribute(PROMPT, params))


def _planted_labels(planted, graph: LinkGraph, groups: list[list[str]]) -> tuple[list[int], list[int]]:
    """(true group, suggested group) of every planted feature node of the graph; unsuggested nodes are alone."""
    suggested = {nid: k for k, members in enumerate(groups) for nid in members[1:]}
    truth, found = [], []
    for i in graph.of_kind("feature"):
        layer, index, _ = graph.feature_coords([i])[0]
        for k, members in enumerate(planted.groups):
            if layer == planted.group_layer and index in members:
                truth.append(k)
                found.append(suggested.get(graph.ids[i], 1000 + i))
    return truth, found


@pytest.mark.parametrize("with_decoders", [True, False], ids=["decoders", "graph-only"])
def test_suggestion_recovers_planted_groups(planted_graph, with_decoders):
    planted, graph = planted_graph
    nodes = candidate_nodes(graph, SuggestRequest())
    evidence = Evidence()
    if with_decoders:
        coords = graph.feature_coords(nodes)
        evidence = Evidence(decoder=decoder_directions(planted.engine.tset, [(l, i) for l, i, _ in coords]))
    result = suggest(graph, nodes, evidence, granularity=0.5)
    truth, found = _planted_labels(planted, graph, result.supernodes)
    assert len(truth) == 2 * len(planted.groups[0]), "every planted feature is a node of the graph"
    assert adjusted_rand_index(truth, found) >= 0.9, result
    assert len(result.scores) == len(result.supernodes)
    assert all(0 < s <= 1 for s in result.scores)
    assert result.scores == sorted(result.scores, reverse=True)


def test_granularity_and_pins(planted_graph):
    planted, graph = planted_graph
    nodes = candidate_nodes(graph, SuggestRequest())
    assert suggest(graph, nodes, Evidence(), granularity=1.0).supernodes == []  # every feature alone
    coarse = suggest(graph, nodes, Evidence(), granularity=0.0)
    fine = suggest(graph, nodes, Evidence(), granularity=0.5)
    assert len(coarse.supernodes) <= len(fine.supernodes)
    pins = [graph.ids[i] for i in nodes[:3]]
    assert candidate_nodes(graph, SuggestRequest(pinned_only=True, pinned_ids=pins)) == nodes[:3]
    assert candidate_nodes(graph, SuggestRequest(pinned_only=True)) == []  # the graph itself pins nothing


def test_scores_are_shares_of_the_logits_influence(planted_graph):
    _, graph = planted_graph
    flow = InfluenceFlow(graph)
    features = graph.of_kind("feature")
    everything = flow.share_through(features + graph.of_kind("error") + graph.of_kind("embedding"))
    assert everything == pytest.approx(1.0)  # no path from a logit avoids every source
    shares = [flow.share_through([i]) for i in features]
    assert all(0 <= s <= 1 for s in shares)
    assert flow.share_through(features) >= max(shares) - 1e-12
    assert flow.share_through([]) == pytest.approx(0.0)


def test_labels_from_atlas_labels_and_tokens():
    graph = LinkGraph.from_json(
        {
            "metadata": {"prompt_tokens": ["<bos>", "a", "b"]},
            "nodes": [
                {"node_id": f"1_{k}_2", "feature_type": "cross layer transcoder", "ctx_idx": 2, "activation": 1.0}
                for k in range(3)
            ],
            "links": [],
        }
    )
    members = [0, 1, 2]
    shared = Evidence(labels=["Texas", "Texas", "cities"])
    assert propose_label(graph, members, shared, members) == "Texas"
    words = Evidence(labels=["US state names", "state capitals", "Texas cities"])
    assert propose_label(graph, members, words, members) == "state"
    tokens = Evidence(top_tokens=[{"Austin", "Dallas"}, {"Austin"}, {"Houston"}])
    assert propose_label(graph, members, tokens, members) == "'Austin'"
    assert propose_label(graph, members, Evidence(), members) == "L1 'b'"


def test_decoder_directions_sum_a_clt_features_outputs():
    from circuitboard.engine.transcoders import random_transcoder_set

    tset = random_transcoder_set(3, 8, 5, cross_layer=True, seed=0)
    got = decoder_directions(tset, [(1, 2), (0, 4)])
    assert torch.allclose(got[0], tset.decoder_rows(1, torch.tensor([2]))[0].sum(0))
    assert torch.allclose(got[1], tset.decoder_rows(0, torch.tensor([4]))[0].sum(0))


def test_at_most_the_most_influential_candidates(planted_graph, monkeypatch):
    from circuitboard.engine import supernodes

    _, graph = planted_graph
    monkeypatch.setattr(supernodes, "MAX_CANDIDATES", 3)
    picked = candidate_nodes(graph, SuggestRequest())
    features = graph.of_kind("feature")
    best = sorted(features, key=lambda i: float(graph.influence[i]))[:3]
    assert picked == sorted(best)


def test_token_overlap_is_jaccard():
    from circuitboard.engine.supernodes import _jaccard_distance

    d = _jaccard_distance([{"a", "b"}, {"b", "c"}, set(), {"a", "b"}])
    assert d[0, 1] == pytest.approx(1 - 1 / 3) and d[0, 3] == 0 and d[0, 2] == 0.5 and d[2, 2] == 0.5
