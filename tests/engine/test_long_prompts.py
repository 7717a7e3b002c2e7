"""Long prompts (issue 16): the streamed rows (engine.rowstore) and the row-block graph against dense references,
and perturbation checks at 512+ tokens; a 1,024-token trace of a tiny model reports its peak RSS."""

import resource

import pytest
import torch

from circuitboard.engine.attribution import RowComputer, _batches_by_layer_pos, attribute, salient_targets
from circuitboard.engine.export import graph_to_json
from circuitboard.engine.graph import Graph, compute_graph_scores, find_threshold, prune_graph
from circuitboard.engine.replacement import build_context, frozen_forward
from circuitboard.engine.rowstore import RowStore
from circuitboard.engine.sources import SourceTable
from circuitboard.engine.transcoders import random_transcoder_set

PROMPT = "The capital of Texas is Austin, and Dallas is in the state of Texas, which is large"
KINDS = [dict(kind="relu"), dict(kind="jumprelu", skip=True), dict(kind="relu", cross_layer=True)]


def _ids(tok, n: int | None = None) -> torch.Tensor:
    """PROMPT's ids, or n random token ids after the BOS (a long prompt the tiny tokenizer cannot spell)."""
    if n is None:
        return tok(PROMPT, return_tensors="pt").input_ids[0]
    g = torch.Generator().manual_seed(n)
    return torch.cat([torch.tensor([1]), torch.randint(3, len(tok), (n - 1,), generator=g)])


def _trace(tiny_models, tc, ids=None, budget=30, arch="llama"):
    _, tok, adapter = tiny_models(arch)
    ids = _ids(tok) if ids is None else ids
    tset = random_transcoder_set(adapter.n_layers, adapter.d_model, 96, seed=1, **tc)
    graph = attribute(
        adapter,
        tset,
        ids,
        targets_fn=lambda ctx: salient_targets(adapter, ctx, 5, 0.99, str),
        max_feature_nodes=budget,
        batch_size=5,
        compute_batch=5,
    )
    return adapter, tset, ids, graph


# ------------------------------------------------------------------------------------ dense references


def _dense_partial_influence(rows, sums, visited, logit_rows, weights):
    """The selection's influence as computed before rows streamed: power iteration over full dense rows."""
    logit_abs = logit_rows.abs()
    total = (weights / logit_abs.sum(1).clamp(min=1e-10)) @ logit_abs
    weight = total
    for _ in range(128):
        weight = (weight[visited] / sums.clamp(min=1e-10)) @ rows.abs()
        if not weight.any():
            break
        total = total + weight
    return total


def _dense_selection(adapter, tset, ids, budget, refresh, compute_batch):
    """Greedy selection over a dense [budget, n_cols] buffer: the chosen features in row order, and the rows."""
    ctx = build_context(adapter, tset, ids)
    sources = SourceTable(tset, ctx)
    targets = salient_targets(adapter, ctx, 5, 0.99, str)
    computer = RowComputer(adapter, tset, ctx, sources)
    logit_rows = computer.target_rows(targets)
    rows, sums, visited = torch.zeros(budget, sources.n_cols), torch.zeros(budget), []
    while len(visited) < budget:
        done = len(visited)
        v = torch.tensor(visited, dtype=torch.long)
        inf = _dense_partial_influence(rows[:done], sums[:done], v, logit_rows, targets.weights)[: sources.n_active]
        inf[v] = -1
        for batch in _batches_by_layer_pos(
            sources.active, inf.topk(min(refresh, budget - done)).indices, compute_batch, deepest_first=True
        ):
            layers, positions, feats = sources.active[batch].unbind(1)
            r = computer.rows(layers, positions, computer.feature_reads(layers, positions, feats))
            rows[len(visited) : len(visited) + len(batch)] = r
            sums[len(visited) : len(visited) + len(batch)] = r.abs().sum(1)
            visited.extend(batch.tolist())
    return torch.tensor(visited), rows, sources


def _dense_influence(A, w):
    term, total = w @ A, (w @ A).clone()
    while term.any():
        term = term @ A
        total += term
    return total


def _dense_prune(graph: Graph, node_threshold: float, edge_threshold: float):
    """Pruning on the dense N × N matrix, as before the graph kept only its rows."""
    A, w = graph.adjacency_matrix, graph.logit_weights()
    normalize = lambda m: m.abs() / m.abs().sum(1, keepdim=True).clamp(min=1e-10)  # noqa: E731
    influence = _dense_influence(normalize(A), w)
    node_mask = influence >= find_threshold(influence, node_threshold)
    node_mask[graph.token_slice.start :] = True
    pruned = A.clone()
    pruned[~node_mask] = 0
    pruned[:, ~node_mask] = 0
    norm = normalize(pruned)
    scores = norm * (_dense_influence(norm, w) + w)[:, None]
    edge_mask = scores >= find_threshold(scores.flatten(), edge_threshold)
    while True:
        before = node_mask.clone()
        edge_mask[~node_mask] = False
        edge_mask[:, ~node_mask] = False
        node_mask[: -graph.n_logits] &= edge_mask[:, : -graph.n_logits].any(0)
        node_mask[: graph.n_features] &= edge_mask[: graph.n_features].any(1)
        node_mask[graph.token_slice.start :] = True
        if torch.equal(node_mask, before):
            break
    edge_mask[~node_mask] = False
    edge_mask[:, ~node_mask] = False
    return influence, node_mask, edge_mask


# ------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("tc", KINDS, ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_streamed_selection_equals_dense(tiny_models, tc):
    """The same features in the same order, and the same rows, as the greedy selection over dense rows."""
    adapter, tset, ids, graph = _trace(tiny_models, tc)
    selected, rows, sources = _dense_selection(adapter, tset, ids, 30, refresh=20, compute_batch=5)
    assert graph.active_features.shape[0] > 30  # the budget binds: the greedy order ran
    assert torch.equal(graph.selected_features, selected)
    keep = torch.cat([selected, torch.arange(sources.n_active, sources.n_cols)])
    assert torch.allclose(graph.rows[: graph.n_features, : len(keep)], rows[:, keep], rtol=0, atol=1e-6)


@pytest.mark.parametrize("tc", KINDS, ids=lambda k: "-".join(f"{v}" for v in k.values()))
@pytest.mark.parametrize("thresholds", [(0.8, 0.98), (0.5, 0.7), (1.0, 0.9)])
def test_pruning_and_influence_equal_dense(tiny_models, tc, thresholds):
    *_, graph = _trace(tiny_models, tc)
    influence, node_mask, edge_mask = _dense_prune(graph, *thresholds)
    res = prune_graph(graph, *thresholds)
    assert torch.equal(res.node_mask, node_mask)
    dense_edges = torch.zeros_like(edge_mask)
    dense_edges[graph.row_nodes] = res.edge_mask
    assert torch.equal(dense_edges, edge_mask)
    assert edge_mask.sum() > 10
    ordered, order = influence.sort(descending=True)
    cumulative = torch.zeros_like(influence)
    cumulative[order] = ordered.cumsum(0) / ordered.sum()
    assert torch.allclose(res.cumulative_scores, cumulative, atol=1e-6)
    # Scores through the rows equal the dense matrix's.
    A = graph.adjacency_matrix
    dense_graph = Graph(**{**graph.__dict__, "rows": A, "logit_tokens": graph.logit_tokens})
    assert compute_graph_scores(graph) == pytest.approx(_dense_scores(dense_graph, A), abs=1e-6)


def _dense_scores(graph: Graph, A: torch.Tensor) -> tuple[float, float]:
    w = graph.logit_weights()
    norm = A.abs() / A.abs().sum(1, keepdim=True).clamp(min=1e-10)
    influence = _dense_influence(norm, w)
    tok, err = influence[graph.token_slice].sum(), influence[graph.error_slice].sum()
    out_inf = influence + w
    completeness = ((1 - norm[:, graph.error_slice].sum(-1)) * out_inf).sum() / out_inf.sum()
    return float(tok / (tok + err)), float(completeness)


def test_row_store_keeps_only_what_rows_can_read():
    """Blocks cover lower layers up to the batch's position; gather and weighted sums equal the dense rows'."""
    g = torch.Generator().manual_seed(0)
    L, P = 4, 6
    active = torch.tensor([[layer, pos, f] for layer in range(L) for pos in range(1, P) for f in range(3)])
    n_active = len(active)
    n_cols = n_active + L * P + P
    store = RowStore(active, n_cols, P, budget=12, like=torch.zeros(1))
    dense = torch.zeros(12, n_cols)
    for start, (layer, pos) in zip(range(0, 12, 3), [(3, 5), (1, 2), (2, 4), (3, 1)], strict=True):
        rows = torch.randn(3, n_cols, generator=g)
        rows[:, :n_active] *= ((active[:, 0] < layer) & (active[:, 1] <= pos)).float()  # what a row can read
        store.add(rows, torch.full((3,), layer), torch.full((3,), pos))
        dense[start : start + 3] = rows
    stored = sum(b.values.numel() for b in store.blocks)
    assert stored < 0.6 * 12 * n_active  # structural zeros are not kept
    cols = torch.randperm(n_active, generator=g)[:17]
    assert torch.equal(store.gather(cols), dense[:, cols])
    w = torch.rand(12, generator=g)
    assert torch.allclose(store.weighted_abs(w), w @ dense.abs(), atol=1e-5)


def test_row_store_trims_each_run_of_a_long_prompt():
    """On a long prompt a batch's rows are stored per layer and band of positions: a row early in the prompt
    keeps no columns of later positions, even beside rows at its end; reads still equal the dense rows'."""
    g = torch.Generator().manual_seed(1)
    L, P = 3, 300
    active = torch.tensor([[layer, pos, 0] for layer in range(L) for pos in range(1, P)])
    n_active = len(active)
    n_cols = n_active + L * P + P
    store = RowStore(active, n_cols, P, budget=4, like=torch.zeros(1))
    layers, positions = torch.tensor([2, 2, 2, 2]), torch.tensor([10, 20, 280, 290])
    rows = torch.randn(4, n_cols, generator=g)
    for r in range(4):
        rows[r, :n_active] *= ((active[:, 0] < layers[r]) & (active[:, 1] <= positions[r])).float()
    store.add(rows, layers, positions)
    early = sum(b.values.numel() for b in store.blocks if b.row == 0)
    assert early <= 2 * 2 * store.MIN_BAND  # two rows × two source layers × one band, not × 290 positions
    assert sum(b.values.numel() for b in store.blocks) < 0.6 * 4 * 2 * (P - 1)
    cols = torch.arange(n_active)
    assert torch.equal(store.gather(cols), rows[:, :n_active])
    w = torch.rand(4, generator=g)
    assert torch.allclose(store.weighted_abs(w), w @ rows.abs(), atol=1e-5)


def _check_columns(adapter, tset, ids, graph, n_features=6):
    """Columns of a few features, errors and tokens equal the frozen model's response to perturbing them."""
    ctx = build_context(adapter, tset, ids)
    base = frozen_forward(adapter, tset, ctx)
    L, P, last = adapter.n_layers, ctx.n_pos, ctx.n_pos - 1
    sel = graph.active_features[graph.selected_features].tolist()
    A = graph.rows

    def check(col, perturbed):
        feat = torch.stack([perturbed.pre_acts[lay][p, f] - base.pre_acts[lay][p, f] for lay, p, f in sel])
        logit = perturbed.logits[last, graph.logit_tokens] - base.logits[last, graph.logit_tokens]
        expected = torch.cat([feat, logit])
        scale = expected.abs().max().clamp(min=1e-6)
        assert (A[:, col] - expected).abs().max() < 1e-3 * scale + 1e-5, col
        return float(scale)

    moved = 0.0
    for i in range(0, graph.n_features, max(1, graph.n_features // n_features)):
        layer, pos, feat = sel[i]
        add = torch.zeros(L, P, adapter.d_model)
        rows = tset.decoder_rows(layer, torch.tensor([feat]))[0]
        for k, out_layer in enumerate(tset.output_layers(layer)):
            add[out_layer, pos] += graph.activation_values[graph.selected_features[i]] * rows[k]
        moved += check(i, frozen_forward(adapter, tset, ctx, mlp_add=add))
    for layer, pos in [(0, P - 1), (L - 1, P // 2)]:
        add = torch.zeros(L, P, adapter.d_model)
        add[layer, pos] = ctx.errors[layer, pos]
        check(graph.error_slice.start + layer * P + pos, frozen_forward(adapter, tset, ctx, mlp_add=add))
    for pos in (1, P // 3, P - 1):
        emb = ctx.embeddings.clone()
        emb[pos] *= 2
        moved += check(graph.token_slice.start + pos, frozen_forward(adapter, tset, ctx, embeddings=emb))
    assert moved > 1e-3, "perturbations moved nothing: the check would pass vacuously"


@pytest.mark.parametrize("tc", [dict(kind="relu"), dict(kind="jumprelu", cross_layer=True, skip=True)], ids=str)
def test_edges_equal_perturbation_at_600_tokens(tiny_models, tc):
    _, tok, _ = tiny_models("llama")
    adapter, tset, ids, graph = _trace(tiny_models, tc, ids=_ids(tok, 600), budget=120)
    assert graph.n_pos == 600 and graph.active_features.shape[0] > 10 * 120
    assert graph.rows.shape == (graph.n_features + graph.n_logits, graph.n_nodes)
    _check_columns(adapter, tset, ids, graph)


def test_trace_1024_tokens(tiny_models, record_property, capsys):
    _, tok, _ = tiny_models("llama")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    adapter, tset, ids, graph = _trace(tiny_models, dict(kind="relu"), ids=_ids(tok, 1024), budget=300)
    data = graph_to_json(graph, prune_graph(graph), slug="long", scan="tiny", node_threshold=0.8)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    assert graph.n_pos == 1024 and len(data["nodes"]) > 0 and len(data["links"]) > 0
    n_active = graph.active_features.shape[0]
    # The graph holds rows over the selected nodes, not over every active feature.
    assert graph.rows.shape[1] == graph.n_features + (adapter.n_layers + 1) * 1024 + graph.n_logits < n_active
    record_property("peak_rss_mib", peak)
    with capsys.disabled():
        print(f"\n1,024-token tiny trace: {n_active} active features, peak RSS {peak:.0f} MiB (was {before:.0f})")


def test_writers_are_not_padded_to_the_busiest_position():
    """One position with many writers costs overflow rounds, not P × its count; the edges read are the same."""
    from circuitboard.engine.sources import Writers

    g = torch.Generator().manual_seed(0)
    P, d = 50, 8
    counts = torch.ones(P, dtype=torch.long)
    counts[7] = 400
    pos = torch.repeat_interleave(torch.arange(P), counts)
    n = len(pos)
    cols = torch.randperm(n, generator=g)
    vecs = torch.randn(n, d, generator=g)
    writers = Writers.build(pos, cols, vecs, P)
    stored = sum(r.vecs.numel() for r in writers.rounds)
    assert stored <= 2 * n * d < P * 400 * d
    for upto in (5, 8, P):
        grads = torch.randn(3, upto, d, generator=g)
        out = torch.zeros(3, n)
        writers.read(grads, out)
        expected = torch.zeros(3, n)
        here = pos < upto
        expected[:, cols[here]] = torch.einsum("bnd,nd->bn", grads[:, pos[here]], vecs[here])
        assert torch.allclose(out, expected, atol=1e-5)
