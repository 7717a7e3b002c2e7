"""Influence, pruning and scores on a graph small enough to compute by hand."""

import pytest
import torch

from circuitboard.engine.graph import (
    Graph,
    compute_graph_scores,
    compute_influence,
    find_threshold,
    normalize_matrix,
    prune_graph,
)


def _graph() -> Graph:
    # Nodes: [feature f | error e | token t | logit y]; rows = targets, columns = sources.
    A = torch.tensor(
        [
            [0.0, 0.0, 2.0, 0.0],  # f <- t
            [0.0, 0.0, 0.0, 0.0],  # e
            [0.0, 0.0, 0.0, 0.0],  # t
            [3.0, -1.0, 1.0, 0.0],
        ]
    )  # y <- f, e, t
    return Graph(
        input_string="x",
        input_tokens=torch.tensor([5]),
        token_strings=["x"],
        active_features=torch.tensor([[0, 0, 7]]),
        activation_values=torch.tensor([1.0]),
        selected_features=torch.tensor([0]),
        rows=A[[0, 3]],  # the feature's and the logit's rows: errors and tokens have no inputs
        logit_tokens=[9],
        logit_strings=["y"],
        logit_probabilities=torch.tensor([1.0]),
        n_layers=1,
        vocab_size=10,
    )


def test_influence_by_hand():
    g = _graph()
    # Â rows: f -> [0,0,1,0]; y -> [.6,.2,.2,0]. wÂ = [.6,.2,.2,0]; wÂ² = [0,0,.6,0]; wÂ³ = 0.
    inf = compute_influence(normalize_matrix(g.adjacency_matrix), g.logit_weights())
    assert torch.allclose(inf, torch.tensor([0.6, 0.2, 0.8, 0.0]))


def test_scores_by_hand():
    replacement, completeness = compute_graph_scores(_graph())
    assert replacement == pytest.approx(0.8)  # tokens 0.8 / (tokens 0.8 + error 0.2)
    assert completeness == pytest.approx(2.4 / 2.6)  # (0.6 + 0.2 + 0.8 + 1·0.8) / (0.6 + 0.2 + 0.8 + 1)


def test_pruning_by_hand():
    g = _graph()
    res = prune_graph(g, node_threshold=0.8, edge_threshold=0.98)
    # Influences [.6,.2,.8,0]: the top set reaching 80% is {t, f}; the error goes, token and logit always stay.
    assert res.node_mask.tolist() == [True, False, True, True]
    assert torch.allclose(res.cumulative_scores[:3], torch.tensor([1.4 / 1.6, 1.0, 0.8 / 1.6]))
    kept = {(int(g.row_nodes[r]), int(s)) for r, s in res.edge_mask.nonzero()}  # edge_mask rows: Graph.rows
    assert kept == {(0, 2), (3, 0), (3, 2)}
    # Edge scores after pruning: f<-t .75, y<-f .75, y<-t .25: an 80% edge threshold drops y<-t.
    res = prune_graph(g, node_threshold=0.8, edge_threshold=0.8)
    assert {(int(g.row_nodes[r]), int(s)) for r, s in res.edge_mask.nonzero()} == {(0, 2), (3, 0)}


def test_influence_rejects_cycles():
    A = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(RuntimeError):
        compute_influence(A, torch.tensor([1.0, 0.0]), max_iter=50)


def _threshold_by_full_sort(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """The definition: every score sorted, zeros included."""
    ordered = scores.sort(descending=True).values
    cumulative = ordered.cumsum(0) / ordered.sum()
    idx = min(int(torch.searchsorted(cumulative, torch.tensor(fraction))), len(ordered) - 1)
    return ordered[idx]


@pytest.mark.parametrize("fraction", [0.5, 0.8, 0.98, 1.0])
def test_threshold_sorting_the_positive_scores_is_the_full_sorts(fraction):
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(5000, generator=gen) ** 4
    scores[torch.rand(5000, generator=gen) < 0.7] = 0  # mostly zeros, as a pruned graph's edge scores
    scores[:40] = 0.25  # ties
    assert find_threshold(scores, fraction) == _threshold_by_full_sort(scores, fraction)
    # The top set reaches `fraction` only at the zeros (the positives' share rounds below it): the threshold is 0.
    assert find_threshold(torch.tensor([3.0, 1.0, 0.0, 0.0]), 1.5) == 0
    assert find_threshold(torch.tensor([3.0, 1.0]), 1.5) == 1.0  # no zeros: the smallest score
