"""Attribution: the rows of the adjacency matrix by batched backward passes through the frozen model.

A row for target t holds, for every source s, the direct effect of s on t: with the replacement model frozen,
    A[t, s] = v_s · J(t ← s)ᵀ r_t
where v_s is what s writes into the residual stream (activation × decoder row, error vector or embedding), r_t
what t reads (encoder row through the frozen MLP-input norm, or the demeaned unembedding through the frozen
final norm) and J the frozen linear map between them: the residual identity, the frozen attention value paths
and any linear skip of the transcoders. MLPs are cut: features are nodes of their own.

We write that backward directly as batched matmuls. A row whose target sits at layer l and position p only
needs layers below l and positions ≤ p (attention is causal), so rows are sorted by (layer, position) and each
batch runs only through the layers and positions it needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from circuitboard.engine.adapters import Adapter
from circuitboard.engine.graph import Graph
from circuitboard.engine.replacement import PromptContext, build_context
from circuitboard.engine.sources import SourceTable
from circuitboard.engine.transcoders import TranscoderSet
from circuitboard.engine.types import AttributionCancelled, ProgressEvent

ProgressFn = Callable[[ProgressEvent], None]


@dataclass
class Targets:
    token_ids: list[int]  # vocab ids; custom directions get vocab_size + i
    strings: list[str]
    weights: torch.Tensor  # [n] probabilities (the w of influence)
    read: torch.Tensor  # [n, d]: direction read off the final residual before the final norm's scale
    # Feature targets read the residual at their own (layer, position), `read` already through the frozen
    # MLP-input norm; None: logit targets, read at the last position of the final residual.
    layers: torch.Tensor | None = None
    positions: torch.Tensor | None = None


def salient_targets(
    adapter: Adapter, ctx: PromptContext, max_n_logits: int, desired_logit_prob: float, decode: Callable[[int], str]
) -> Targets:
    probs = ctx.logits[-1].float().softmax(-1)
    top_p, top_i = probs.topk(max_n_logits)
    cutoff = int(torch.searchsorted(top_p.cumsum(0), torch.tensor(desired_logit_prob))) + 1
    ids = top_i[: min(cutoff, max_n_logits)].tolist()
    return token_targets(adapter, ctx, ids, decode)


def token_targets(adapter: Adapter, ctx: PromptContext, ids: list[int], decode: Callable[[int], str]) -> Targets:
    probs = ctx.logits[-1].float().softmax(-1)
    W_U = adapter.W_U
    # The logit node is logit − mean logit, so it reads the demeaned unembedding column.
    read = W_U[ids] - W_U.mean(0, keepdim=True)
    return Targets(ids, [decode(i) for i in ids], probs[ids].to(W_U.dtype), read)


def difference_target(adapter: Adapter, ctx: PromptContext, a: int, b: int, decode: Callable[[int], str]) -> Targets:
    """A single target `logit(a) − logit(b)` (the mean cancels), with virtual id vocab_size."""
    W_U = adapter.W_U
    return Targets(
        [adapter.vocab_size], [f"{decode(a)} − {decode(b)}"], torch.ones(1, dtype=W_U.dtype), (W_U[a] - W_U[b])[None]
    )


def feature_targets(
    adapter: Adapter, tset: TranscoderSet, ctx: PromptContext, features: list[tuple[int, int, int]]
) -> Targets:
    """Targets that are transcoder features (layer, index, position): each reads its pre-activation, the
    encoder row through the frozen MLP-input norm, with equal weights. Virtual ids vocab_size + i."""
    for i, (layer, index, pos) in enumerate(features):
        if not (0 <= layer < tset.n_layers and 0 <= index < tset.d_transcoder and 1 <= pos < ctx.n_pos):
            raise ValueError(
                f"target_features.{i}: ({layer}, {index}, {pos}) is not a feature of this prompt "
                f"(layers < {tset.n_layers}, indices < {tset.d_transcoder}, positions 1..{ctx.n_pos - 1})"
            )
    layers, indices, positions = (torch.tensor(col, dtype=torch.long) for col in zip(*features, strict=True))
    read = encoder_reads(adapter, tset, ctx, layers, positions, indices)
    n = len(features)
    return Targets(
        token_ids=[adapter.vocab_size + i for i in range(n)],
        strings=[f"feature {layer}_{index} at {pos}" for layer, index, pos in features],
        weights=torch.full((n,), 1.0 / n, dtype=read.dtype, device=read.device),
        read=read,
        layers=layers,
        positions=positions,
    )


def encoder_reads(
    adapter: Adapter,
    tset: TranscoderSet,
    ctx: PromptContext,
    layers: torch.Tensor,
    positions: torch.Tensor,
    features: torch.Tensor,
) -> torch.Tensor:
    """d pre-activation / d resid_mid for features [n]: encoder rows through the frozen MLP-input norm."""
    device = tset.device
    reads = torch.empty(len(features), adapter.d_model, dtype=tset.dtype, device=device)
    layers, positions, features = layers.to(device), positions.to(device), features.to(device)
    for layer in layers.unique().tolist():
        at = layers == layer
        W = tset.layers[layer].W_enc[features[at]]
        reads[at] = adapter.blocks[layer].mlp_in.backward(W, ctx.scale_mlp_in[layer, positions[at]])
    return reads


class RowComputer:
    """Backward rows through the frozen model for batches of targets."""

    def __init__(self, adapter: Adapter, tset: TranscoderSet, ctx: PromptContext, sources: SourceTable):
        self.adapter, self.tset, self.ctx, self.sources = adapter, tset, ctx, sources

    def feature_reads(self, layers: torch.Tensor, positions: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return encoder_reads(self.adapter, self.tset, self.ctx, layers, positions, features)

    def logit_read(self, targets: Targets) -> torch.Tensor:
        return self.adapter.final_norm.backward(targets.read, self.ctx.scale_final[-1])

    def target_rows(self, targets: Targets) -> torch.Tensor:
        """The rows of the targets: logits at the final residual's last position, features where they sit."""
        if targets.layers is not None and targets.positions is not None:
            return self.rows(targets.layers, targets.positions, targets.read)
        n, L, P = len(targets.token_ids), self.adapter.n_layers, self.ctx.n_pos
        return self.rows(torch.full((n,), L), torch.full((n,), P - 1), self.logit_read(targets))

    def rows(self, layers: torch.Tensor, positions: torch.Tensor, reads: torch.Tensor) -> torch.Tensor:
        """Rows for B targets injected at `layers` (L = final residual) and `positions`, reading `reads` [B, d]."""
        ad, ctx, src = self.adapter, self.ctx, self.sources
        B, L = len(layers), ad.n_layers
        P = int(positions.max()) + 1
        layers, positions = layers.to(reads.device), positions.to(reads.device)
        g = torch.zeros(B, P, ad.d_model, dtype=reads.dtype, device=reads.device)
        out = torch.zeros(B, src.n_cols, dtype=reads.dtype, device=reads.device)
        batch = torch.arange(B, device=reads.device)
        top = int(layers.max())
        at = layers == L
        g[batch[at], positions[at]] += reads[at]
        for layer in range(min(top, L - 1), -1, -1):
            # g is now d target / d resid after layer `layer`: read edges of everything written there.
            src.writers[layer].read(g, out)  # index_add: a CLT feature writes to several layers
            block = ad.blocks[layer]
            W_skip = self.tset.layers[layer].W_skip
            if W_skip is not None:
                g = g + block.mlp_in.backward(g @ W_skip, ctx.scale_mlp_in[layer, :P])
            at = layers == layer
            if at.any():
                g[batch[at], positions[at]] += reads[at]
            g = g + self._attention_backward(layer, g, P)
        for p in range(P):
            out[:, src.token_start + p] = g[:, p] @ ctx.embeddings[p]
        return out

    def _attention_backward(self, layer: int, g: torch.Tensor, P: int) -> torch.Tensor:
        block, ctx = self.adapter.blocks[layer], self.ctx
        attn = block.attn
        B = g.shape[0]
        if block.attn_out is not None:
            assert ctx.scale_attn_out is not None  # recorded for every model whose blocks have this norm
            g = block.attn_out.backward(g, ctx.scale_attn_out[layer, :P])
        u = (g @ attn.W_o).view(B, P, attn.n_heads, attn.head_dim)
        pattern = ctx.patterns[layer][:, :P, :P]
        gv = torch.einsum("hij,bihd->bjhd", pattern, u)
        group = attn.n_heads // attn.n_kv_heads
        if group > 1:
            gv = gv.reshape(B, P, attn.n_kv_heads, group, attn.head_dim).sum(3)
        gx = gv.reshape(B, P, attn.n_kv_heads * attn.head_dim) @ attn.W_v
        return block.attn_in.backward(gx, ctx.scale_attn_in[layer, :P])


def partial_influence(
    feature_rows: torch.Tensor,
    row_sums: torch.Tensor,
    feature_nodes: torch.Tensor,
    logit_rows: torch.Tensor,
    logit_weights: torch.Tensor,
    max_iter: int = 128,
    chunk: int = 512,
) -> torch.Tensor:
    """Influence of every column on the logits through the rows computed so far (power iteration).

    Row-normalised |A| is applied as |A| scaled by 1/rowsum on the left. Row sums are cached when rows are
    written and |A| is formed in row chunks, so no full-size copy of the buffer is made. Logit nodes are
    never sources, so after the first step only feature rows carry weight.
    """

    def step(weight: torch.Tensor) -> torch.Tensor:
        scaled = weight / row_sums.clamp(min=1e-10)
        out = torch.zeros(feature_rows.shape[1], dtype=feature_rows.dtype, device=feature_rows.device)
        for start in range(0, len(scaled), chunk):
            w = scaled[start : start + chunk]
            if w.any():
                out += w @ feature_rows[start : start + chunk].abs()
        return out

    logit_abs = logit_rows.abs()
    total = (logit_weights.to(logit_rows.dtype) / logit_abs.sum(1).clamp(min=1e-10)) @ logit_abs
    weight = total
    for _ in range(max_iter):
        weight = step(weight[feature_nodes])
        if not weight.any():
            break
        total = total + weight
    return total


def attribute(
    adapter: Adapter,
    tset: TranscoderSet,
    input_ids: torch.Tensor,
    *,
    targets_fn,
    input_string: str = "",
    decode: Callable[[int], str] = str,
    max_feature_nodes: int | None = None,
    batch_size: int = 64,
    update_interval: int = 4,
    compute_batch: int | None = None,
    progress: ProgressFn | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Graph:
    """Compute the unpruned attribution graph of `input_ids`.

    `targets_fn(ctx) -> Targets` picks the logit targets once the prompt has run.
    """
    timings = {}
    t0 = time.perf_counter()
    report = _reporter(progress, should_cancel)
    report("forward", 0, 1)
    ctx = build_context(adapter, tset, input_ids)
    sources = SourceTable(tset, ctx)
    targets = targets_fn(ctx)
    computer = RowComputer(adapter, tset, ctx, sources)
    report("forward", 1, 1)
    timings["forward_s"] = time.perf_counter() - t0

    L = adapter.n_layers
    n_logits, n_active = len(targets.token_ids), sources.n_active
    # Logit rows first: their influence seeds the feature order.
    t1 = time.perf_counter()
    report("logits", 0, n_logits)
    logit_rows = computer.target_rows(targets)
    report("logits", n_logits, n_logits)
    timings["logits_s"] = time.perf_counter() - t1

    budget = n_active if max_feature_nodes is None else min(max_feature_nodes, n_active)
    rows = _RowBuffers(sources, logit_rows, budget, n_logits)
    # `batch_size` sets how often the greedy order is refreshed (as circuit-tracer); the backward itself runs
    # on larger batches, which matmuls need to be efficient on a CPU (≈ 5× less time per row at 512 than 64),
    # bounded so one batch's row buffer stays near 128 MB.
    if compute_batch is None:
        compute_batch = max(batch_size, min(1024, int(128e6 // (4 * sources.n_cols))))
    t2 = time.perf_counter()
    report("features", 0, budget)
    refresh_every = update_interval * batch_size
    visited = _feature_rows(computer, sources, targets, logit_rows, rows, refresh_every, compute_batch, report)
    timings["features_s"] = time.perf_counter() - t2

    selected = torch.tensor(visited, dtype=torch.long)
    graph = _assemble(ctx, sources, targets, rows, selected, logit_rows, L, adapter.vocab_size, input_string, decode)
    timings["total_s"] = time.perf_counter() - t0
    graph.info["timings"] = timings
    graph.info["n_active_features"] = n_active
    return graph


class _RowBuffers:
    """Where the feature rows go: `features` [budget, n_cols] and their L1 norms `sums`. When every feature is
    selected on the CPU in fp32, `features` is a view into the final `adjacency`: no second copy."""

    def __init__(self, sources: SourceTable, logit_rows: torch.Tensor, budget: int, n_logits: int) -> None:
        self.budget = budget
        self.every_feature = budget == sources.n_active
        self.adjacency: torch.Tensor | None = None
        if self.every_feature and logit_rows.device.type == "cpu" and logit_rows.dtype == torch.float32:
            N = sources.n_cols + n_logits
            self.adjacency = torch.zeros(N, N, dtype=torch.float32)
            self.features = self.adjacency[:budget, : sources.n_cols]
        else:
            self.features = torch.zeros(budget, sources.n_cols, dtype=logit_rows.dtype, device=logit_rows.device)
        self.sums = torch.zeros(budget, dtype=logit_rows.dtype, device=logit_rows.device)


def _feature_rows(
    computer: RowComputer,
    sources: SourceTable,
    targets: Targets,
    logit_rows: torch.Tensor,
    rows: _RowBuffers,
    refresh_every: int,
    compute_batch: int,
    report: Callable[[str, int, int], None],
) -> list[int]:
    """Fill `rows` with the rows of the features chosen greedily by influence (all of them, in column order,
    when the budget covers every feature); returns the chosen features in row order."""
    budget = rows.budget
    visited: list[int] = []
    queue = iter([torch.arange(sources.n_active)]) if rows.every_feature else None
    done = 0
    while done < budget:
        if queue is not None:
            chunk = next(queue)
        else:
            chunk = _next_by_influence(
                sources,
                logit_rows,
                rows.features[:done],
                rows.sums[:done],
                visited,
                targets.weights,
                min(refresh_every, budget - done),
            )
        for batch in _batches_by_layer_pos(sources.active, chunk, compute_batch):
            layers, positions, feats = sources.active[batch].unbind(1)
            reads = computer.feature_reads(layers, positions, feats)
            batch_rows = computer.rows(layers, positions, reads)
            rows.features[done : done + len(batch)] = batch_rows
            rows.sums[done : done + len(batch)] = torch.linalg.vector_norm(batch_rows, ord=1, dim=1)
            visited.extend(batch.tolist())
            done += len(batch)
            report("features", done, budget)
        if queue is not None:
            break
    return visited


def _reporter(progress: ProgressFn | None, should_cancel: Callable[[], bool] | None):
    def report(phase: str, done: int, total: int) -> None:
        if should_cancel is not None and should_cancel():
            raise AttributionCancelled("attribution cancelled")
        if progress is not None:
            progress(ProgressEvent(phase=phase, done=done, total=total))

    return report


def _batches_by_layer_pos(active: torch.Tensor, chunk: torch.Tensor, batch_size: int):
    """Split feature indices into batches sorted by (layer, pos) so each batch touches few layers/positions."""
    key = active[chunk, 0] * 1_000_000 + active[chunk, 1]
    ordered = chunk[key.argsort(stable=True)]
    return ordered.split(batch_size)


def _next_by_influence(
    sources: SourceTable,
    logit_rows: torch.Tensor,
    feature_rows: torch.Tensor,
    row_sums: torch.Tensor,
    visited: list[int],
    logit_weights: torch.Tensor,
    count: int,
) -> torch.Tensor:
    visited_t = torch.tensor(visited, dtype=torch.long, device=feature_rows.device)
    influence = partial_influence(feature_rows, row_sums, visited_t, logit_rows, logit_weights)[: sources.n_active]
    if visited:
        influence[visited_t] = -1
    return influence.topk(count).indices.cpu()


def _assemble(
    ctx: PromptContext,
    sources: SourceTable,
    targets: Targets,
    rows: _RowBuffers,
    selected: torch.Tensor,
    logit_rows: torch.Tensor,
    L: int,
    vocab_size: int,
    input_string: str,
    decode: Callable[[int], str],
) -> Graph:
    feature_rows, adjacency = rows.features, rows.adjacency
    P, n_sel, n_logits = ctx.n_pos, len(selected), len(targets.token_ids)
    N = n_sel + L * P + P + n_logits
    keep_cols = torch.cat([selected, torch.arange(sources.n_active, sources.n_cols)])
    if adjacency is not None:
        # Rows were written in place; that is only right when the selection is every feature in column order.
        assert torch.equal(selected, torch.arange(sources.n_active)), "in-place rows need the identity selection"
    else:
        adjacency = torch.zeros(N, N, dtype=torch.float32)
        cols = keep_cols.to(feature_rows.device)
        # Row chunks: never a second full-size copy of the row buffer beside the adjacency.
        for start in range(0, n_sel, 1024):
            stop = min(start + 1024, n_sel)
            adjacency[start:stop, : n_sel + L * P + P] = feature_rows[start:stop][:, cols].float().cpu()
    adjacency[N - n_logits :, : n_sel + L * P + P] = logit_rows[:, keep_cols.to(logit_rows.device)].float().cpu()
    return Graph(
        input_string=input_string,
        input_tokens=ctx.input_ids.cpu(),
        token_strings=[decode(int(t)) for t in ctx.input_ids.tolist()],
        active_features=sources.active.cpu(),
        activation_values=sources.values.float().cpu(),
        selected_features=selected,
        adjacency_matrix=adjacency,
        logit_tokens=list(targets.token_ids),
        logit_strings=list(targets.strings),
        logit_probabilities=targets.weights.float().cpu(),
        n_layers=L,
        vocab_size=vocab_size,
    )
