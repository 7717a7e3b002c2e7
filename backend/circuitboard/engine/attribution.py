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

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from circuitboard.engine.adapters import Adapter, Attention
from circuitboard.engine.graph import Graph
from circuitboard.engine.replacement import PromptContext, build_context
from circuitboard.engine.rowstore import RowStore, ranking_influence
from circuitboard.engine.sources import SourceTable
from circuitboard.engine.transcoders import TranscoderSet
from circuitboard.engine.types import AttributionCancelled, Precision, ProgressEvent
from circuitboard.precision import dtype_for

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
    read = W_U[ids] - adapter.unembed_mean
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
    """d pre-activation / d resid_mid for features [n]: encoder rows through the frozen MLP-input norm.
    The indices come on the CPU, where they are grouped by layer (no device round trip)."""
    device = tset.device
    reads = torch.empty(len(features), adapter.d_model, dtype=tset.dtype, device=device)
    layers, positions, features = layers.cpu(), positions.cpu(), features.cpu()
    for layer in layers.unique().tolist():
        at = (layers == layer).nonzero().squeeze(1)
        W = tset.layers[layer].W_enc[features[at].to(device)]
        scale = ctx.scale_mlp_in[layer, positions[at].to(device)]
        reads[at.to(device)] = adapter.blocks[layer].mlp_in.backward(W, scale)
    return reads


@dataclass
class FrozenLayer:
    """One layer's backward with the prompt's frozen norm scales folded in (Norm.backward_then/after_backward):
        attention  g ↦ einsum(pattern, g @ W_o) @ W_v    (summed over the query heads of each key/value head)
        skip       g ↦ s_mlp · (g @ W_skip)
    pattern[h, i, j] = s_out[i] · pattern[h, i, j] · s_in[j]: the scales of the post-attention norm (at the
    query i, where the gradient sits) and of the attention-input norm (at the key j, where it goes).

    The pattern is kept as the matrix that mixes the gradient: mix[k, j, q, i] = pattern[k·G + q, i, j] for the
    G query heads q of key/value head k, so that the mixing and the sum over a key/value head's queries are one
    matmul, mix[k] ([P, G·P]) times the gradient of the G heads stacked ([G·P, ·]); transposed once here,
    contiguous (a transposed view as the left operand ran the batched matmul at half speed)."""

    W_o: torch.Tensor  # [d, H·hd]
    mix: torch.Tensor  # [kv, P, G, P]
    W_v: torch.Tensor  # [kv·hd, d]
    W_skip: torch.Tensor | None  # [d, d]

    @classmethod
    def fold(cls, adapter: Adapter, tset: TranscoderSet, ctx: PromptContext, layer: int) -> FrozenLayer:
        block = adapter.blocks[layer]
        W_o, pattern = block.attn.W_o, ctx.patterns[layer] * ctx.scale_attn_in[layer].view(1, 1, -1)
        if block.attn_out is not None:
            assert ctx.scale_attn_out is not None  # recorded for every model whose blocks have this norm
            W_o = block.attn_out.backward_then(W_o)
            pattern = pattern * ctx.scale_attn_out[layer].view(1, -1, 1)
        W_skip = tset.layers[layer].W_skip
        H, P = pattern.shape[:2]
        kv = block.attn.n_kv_heads
        mix = pattern.view(kv, H // kv, P, P).permute(0, 3, 1, 2).contiguous()
        return cls(
            W_o=W_o,
            mix=mix,
            W_v=block.attn_in.after_backward(block.attn.W_v),
            W_skip=None if W_skip is None else block.mlp_in.after_backward(W_skip),
        )


class RowComputer:
    """Backward rows through the frozen model for batches of targets."""

    def __init__(self, adapter: Adapter, tset: TranscoderSet, ctx: PromptContext, sources: SourceTable):
        self.adapter, self.tset, self.ctx, self.sources = adapter, tset, ctx, sources
        self.frozen = [FrozenLayer.fold(adapter, tset, ctx, layer) for layer in range(adapter.n_layers)]

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
        """Rows for B targets injected at `layers` (L = final residual) and `positions`, reading `reads` [B, d].

        `layers` and `positions` are index bookkeeping: read on the CPU, so that the loop below never waits
        for the device (a mask or `.any()` on a device tensor would)."""
        layers, positions = layers.cpu(), positions.cpu()
        # Deepest rows first. A row's gradient is zero above its own layer, so at each layer the rows that carry
        # one are a prefix, and every matmul of that layer runs on the prefix only: a batch spread over the
        # layers does about half the work it would over all rows. Callers that can, pass them in that order
        # (the reorder below is a gather of the whole [B, n_cols] output).
        order = torch.argsort(layers, descending=True, stable=True)
        if torch.equal(order, torch.arange(len(order))):
            return self._rows_deepest_first(layers, positions, reads)
        out = self._rows_deepest_first(layers[order], positions[order], reads[order.to(reads.device)])
        return out[torch.argsort(order).to(out.device)]

    def _rows_deepest_first(self, layers: torch.Tensor, positions: torch.Tensor, reads: torch.Tensor) -> torch.Tensor:
        """`rows` for targets sorted by layer, deepest first (CPU `layers`, `positions`)."""
        ad, ctx, src = self.adapter, self.ctx, self.sources
        B, L = len(layers), ad.n_layers
        P = int(positions.max()) + 1
        g = torch.zeros(B, P, ad.d_model, dtype=reads.dtype, device=reads.device)
        out = torch.zeros(B, src.n_cols, dtype=reads.dtype, device=reads.device)
        inject = _injections(layers, positions, reads.device)
        live = _LivePositions.of(positions, P, ad.blocks[0].attn, g)
        # at_or_above[l]: how many rows sit at layer >= l, i.e. carry a gradient below layer l's MLP input.
        at_or_above = torch.bincount(layers, minlength=L + 2).flip(0).cumsum(0).flip(0).tolist()
        top = int(layers.max())
        if L in inject:
            g[inject[L][0], inject[L][1]] += reads[inject[L][0]]
        for layer in range(min(top, L - 1), -1, -1):
            # g is now d target / d resid after layer `layer`: read edges of everything written there.
            n = at_or_above[layer + 1]  # rows above this layer's MLP: the only ones it writes into
            frozen = self.frozen[layer]
            if n:
                src.writers[layer].read(g[:n], out[:n])  # index_add: a CLT feature writes to several layers
            # In place (same sums): a new [B, P, d] per step is a page-faulting allocation on a long prompt.
            if n and frozen.W_skip is not None:
                g[:n].addcmul_(g[:n] @ frozen.W_skip, ctx.scale_mlp_in[layer, :P])
            if layer in inject:
                rows, pos = inject[layer]
                g[rows, pos] += reads[rows]
            n = at_or_above[layer]
            # Rows injected at this layer (at the last layer, the logits' too: every row) have a gradient at
            # their own position only: no attention has mixed it yet. They are the prefix's tail, from `fresh`.
            fresh = 0 if layer == L - 1 else at_or_above[layer + 1]
            live.attention_backward(self.adapter.blocks[layer].attn, self.frozen[layer], g[:n], n, fresh)
        for p in range(P):
            out[:, src.token_start + p] = g[:, p] @ ctx.embeddings[p]
        return out


class _LivePositions:
    """The attention's backward for a batch of rows, on the (row, position) pairs whose gradient can be non-zero.

    A row's gradient starts at its own position and attention only looks back, so it stays zero at every later
    position: on a greedy batch of rows at mixed positions about half of B × P. The output and value projections
    run on those pairs alone, packed. Between them the pattern mixes positions per head: the projected gradient is
    scattered into a buffer laid out [head, position, row, head_dim], where that mixing, summed over each
    key/value head's queries, is one plain matmul per key/value head (`mix_k @ [G·P, rows·head_dim]`, see
    FrozenLayer) with no transposed copy of the buffer (an einsum over the row-major
    layout copied it twice: 1.3-1.6× slower). Entries of dead pairs are never written and stay zero, so every
    sum is the dense one's. Rows are in deepest-first order and a layer works on a prefix of them: its live pairs
    are a prefix of the list.

    A row that joins at this layer has a gradient at its own position only, so on the query side (the output
    projection) it has one live pair, not one per earlier position: about a tenth of the projection's work on a
    greedy batch. The pairs it skips have never been written (the row was not in the prefix before), so they
    are still zero; from the next layer on, the row's every pair is written."""

    def __init__(
        self,
        rows: torch.Tensor,
        pos: torch.Tensor,
        flat: torch.Tensor,
        upto: list[int],
        own: torch.Tensor,
        u: torch.Tensor,
    ):
        self.rows, self.pos, self.flat, self.upto, self.own, self.u = rows, pos, flat, upto, own, u

    @classmethod
    def of(cls, positions: torch.Tensor, P: int, attn: Attention, g: torch.Tensor) -> _LivePositions:
        B = len(positions)
        rows, pos = (torch.arange(P)[None, :] <= positions[:, None]).nonzero(as_tuple=True)  # CPU, row-major
        ends = torch.cumsum(positions + 1, 0)
        upto = [0, *ends.tolist()]
        u = g.new_zeros(attn.n_heads, P, B, attn.head_dim)  # allocated once per batch (see above)
        device = g.device
        # own[r]: the pair of row r at its own position, the last of its pairs
        return cls(rows.to(device), pos.to(device), (rows * P + pos).to(device), upto, (ends - 1).to(device), u)

    def attention_backward(self, attn: Attention, frozen: FrozenLayer, g: torch.Tensor, n: int, fresh: int) -> None:
        """g[:n] += the attention's backward of g[:n] (frozen pattern, summed over each key/value head's queries);
        rows fresh.. n - 1 carry a gradient at their own position only."""
        H, hd, kv = attn.n_heads, attn.head_dim, attn.n_kv_heads
        P, d = g.shape[1], g.shape[-1]
        k = self.upto[n]
        rows, pos, flat = self.rows[:k], self.pos[:k], self.flat[:k]
        g_flat = g.reshape(n * P, d)
        u = self.u[:, :P, :n]  # [H, P, n, hd]
        q = slice(None, k) if fresh >= n else self._query_pairs(fresh, n)
        uq = (g_flat[self.flat[q]] @ frozen.W_o).view(-1, H, hd)
        u.permute(2, 1, 0, 3)[self.rows[q], self.pos[q]] = uq.to(u.dtype)
        mix = frozen.mix[:, :P, :, :P].reshape(kv, P, (H // kv) * P)  # a copy only when P < the prompt's
        mixed = torch.bmm(mix, u.reshape(kv, (H // kv) * P, n * hd)).view(kv, P, n, hd)
        gv = mixed.permute(2, 1, 0, 3)[rows, pos].reshape(k, kv * hd)  # [k, kv·hd], at the live pairs
        g_flat.index_add_(0, flat, (gv @ frozen.W_v).to(g.dtype))

    def _query_pairs(self, fresh: int, n: int) -> torch.Tensor:
        """The live pairs of rows ..fresh - 1, then the own pair of each of rows fresh.. n - 1."""
        every = torch.arange(self.upto[fresh], device=self.own.device)
        return torch.cat([every, self.own[fresh:n]])


def _injections(
    layers: torch.Tensor, positions: torch.Tensor, device: torch.device
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """layer -> (rows, positions) on `device` of the targets injected there, from CPU indices."""
    out = {}
    for layer in layers.unique().tolist():
        rows = (layers == layer).nonzero().squeeze(1)
        out[layer] = (rows.to(device), positions[rows].to(device))
    return out


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
    precision: Precision = "fp32",
) -> Graph:
    """Compute the unpruned attribution graph of `input_ids`.

    `targets_fn(ctx) -> Targets` picks the logit targets once the prompt has run. `precision` "bf16" runs the
    backward's matmuls in bfloat16 (autocast; rows are summed and stored in the engine's dtype).
    """
    timings = {}
    t0 = time.perf_counter()
    report = _reporter(progress, should_cancel)
    report("forward", 0, 1)
    ctx = build_context(adapter, tset, input_ids, errors=False)
    sources = SourceTable(tset, ctx)
    targets = targets_fn(ctx)
    computer = RowComputer(adapter, tset, ctx, sources)
    _drop_forward_records(ctx)
    report("forward", 1, 1)
    timings["forward_s"] = time.perf_counter() - t0
    reduced = _reduced_precision(precision, computer)
    with reduced or contextlib.nullcontext():
        graph = _attribute_rows(
            adapter, computer, targets, report, timings, max_feature_nodes, batch_size, update_interval, compute_batch
        )
    graph.input_string = input_string
    graph.token_strings = [decode(int(t)) for t in ctx.input_ids.tolist()]
    timings["total_s"] = time.perf_counter() - t0
    graph.info["timings"] = timings
    graph.info["n_active_features"] = sources.n_active
    graph.info["precision"] = "bf16" if reduced is not None else _PRECISION_NAMES[ctx.embeddings.dtype]
    return graph


def _drop_forward_records(ctx: PromptContext) -> None:
    """Free what only the forward and the source table needed: the rows read the folded patterns, norm scales
    and embeddings (L·P·d_t activations alone are 300 MB at 1,024 tokens of Gemma 3 270M)."""
    empty = ctx.embeddings.new_zeros(0)
    ctx.acts, ctx.patterns = [], []  # the row computer holds the patterns, norm scales folded in
    ctx.mlp_in = ctx.mlp_out = ctx.resid_mid = ctx.errors = empty
    ctx.skip_out = None


_PRECISION_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def _reduced_precision(precision: Precision, computer: RowComputer) -> torch.autocast | None:
    """The autocast of a bf16 trace (None for fp32); what every batch multiplies is cast to bf16 once here."""
    ctx, sources = computer.ctx, computer.sources
    device = ctx.embeddings.device
    if dtype_for(precision, device.type) != torch.bfloat16 or ctx.embeddings.dtype == torch.bfloat16:
        return None
    sources.cast_vectors(torch.bfloat16)
    for frozen in computer.frozen:
        frozen.mix = frozen.mix.to(torch.bfloat16)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _attribute_rows(
    adapter: Adapter,
    computer: RowComputer,
    targets: Targets,
    report: Callable[[str, int, int], None],
    timings: dict[str, float],
    max_feature_nodes: int | None,
    batch_size: int,
    update_interval: int,
    compute_batch: int | None,
) -> Graph:
    """The logit rows, then the feature rows chosen greedily: the unpruned graph (prompt strings unset)."""
    ctx, sources = computer.ctx, computer.sources

    L = adapter.n_layers
    n_logits, n_active = len(targets.token_ids), sources.n_active
    # Logit rows first: their influence seeds the feature order.
    t1 = time.perf_counter()
    report("logits", 0, n_logits)
    logit_rows = computer.target_rows(targets)
    report("logits", n_logits, n_logits)
    timings["logits_s"] = time.perf_counter() - t1

    budget = n_active if max_feature_nodes is None else min(max_feature_nodes, n_active)
    graph_rows, store = _row_store(sources, ctx.n_pos, logit_rows, budget, n_logits)
    # `batch_size` sets how often the greedy order is refreshed (as circuit-tracer); the backward itself runs
    # on larger batches, which matmuls need to be efficient on a CPU (≈ 5× less time per row at 512 than 64),
    # bounded so one batch's row buffer stays near 128 MB.
    if compute_batch is None:
        compute_batch = max(batch_size, min(1024, int(128e6 // (4 * sources.n_cols))))
    t2 = time.perf_counter()
    report("features", 0, budget)
    refresh_every = update_interval * batch_size
    visited = _feature_rows(computer, sources, targets, logit_rows, store, refresh_every, compute_batch, report)
    timings["features_s"] = time.perf_counter() - t2

    selected = torch.tensor(visited, dtype=torch.long)
    rows = store.graph_rows(selected, logit_rows, graph_rows)
    return Graph(
        input_string="",
        input_tokens=ctx.input_ids.cpu(),
        token_strings=[],
        active_features=sources.active.cpu(),
        activation_values=sources.values.float().cpu(),
        selected_features=selected,
        rows=rows,
        logit_tokens=list(targets.token_ids),
        logit_strings=list(targets.strings),
        logit_probabilities=targets.weights.float().cpu(),
        n_layers=L,
        vocab_size=adapter.vocab_size,
    )


def _row_store(
    sources: SourceTable, n_pos: int, logit_rows: torch.Tensor, budget: int, n_logits: int
) -> tuple[torch.Tensor | None, RowStore]:
    """Where the feature rows go. When every feature is selected on the CPU in fp32, straight into the graph's
    rows (returned too): no second copy; otherwise into blocked storage (see rowstore)."""
    if budget == sources.n_active and logit_rows.device.type == "cpu" and logit_rows.dtype == torch.float32:
        graph_rows = torch.zeros(budget + n_logits, sources.n_cols + n_logits, dtype=torch.float32)
        view = graph_rows[:budget, : sources.n_cols]
        return graph_rows, RowStore(sources.active, sources.n_cols, n_pos, budget, logit_rows, dense=view)
    # Every feature on another device or dtype: dense there, nothing to rank.
    dense = logit_rows.new_zeros(budget, sources.n_cols) if budget == sources.n_active else None
    return None, RowStore(sources.active, sources.n_cols, n_pos, budget, logit_rows, dense=dense)


def _feature_rows(
    computer: RowComputer,
    sources: SourceTable,
    targets: Targets,
    logit_rows: torch.Tensor,
    store: RowStore,
    refresh_every: int,
    compute_batch: int,
    report: Callable[[str, int, int], None],
) -> list[int]:
    """Fill `store` with the rows of the features chosen greedily by influence (all of them, in column order,
    when the budget covers every feature); returns the chosen features in row order."""
    budget = store.budget
    visited: list[int] = []
    every_feature = budget == sources.n_active
    n_layers = len(sources.writers)
    while store.done < budget:
        if every_feature:
            chunk = torch.arange(sources.n_active)
        else:
            visited_t = torch.tensor(visited, dtype=torch.long)
            influence = ranking_influence(store, logit_rows, targets.weights, visited_t, n_layers)
            influence = influence[: sources.n_active]
            influence[visited_t.to(influence.device)] = -1
            chunk = influence.topk(min(refresh_every, budget - store.done)).indices.cpu()
        # All features go in column order (the rows are the adjacency's, square with its columns); a greedy
        # chunk's rows go deepest first, the order the row computer works in.
        for batch in _batches_by_layer_pos(sources.active, chunk, compute_batch, deepest_first=not every_feature):
            layers, positions, feats = sources.active[batch].unbind(1)
            reads = computer.feature_reads(layers, positions, feats)
            store.add(computer.rows(layers, positions, reads), layers, positions)
            visited.extend(batch.tolist())
            report("features", store.done, budget)
    return visited


def _reporter(progress: ProgressFn | None, should_cancel: Callable[[], bool] | None):
    def report(phase: str, done: int, total: int) -> None:
        if should_cancel is not None and should_cancel():
            raise AttributionCancelled("attribution cancelled")
        if progress is not None:
            progress(ProgressEvent(phase=phase, done=done, total=total))

    return report


def _batches_by_layer_pos(active: torch.Tensor, chunk: torch.Tensor, batch_size: int, deepest_first: bool = False):
    """Split feature indices into batches sorted by (layer, pos) so each batch touches few layers/positions;
    `deepest_first`: layers in descending order (positions still ascending within a layer)."""
    layer_key = -active[chunk, 0] if deepest_first else active[chunk, 0]
    key = layer_key * 1_000_000 + active[chunk, 1]
    ordered = chunk[key.argsort(stable=True)]
    return ordered.split(batch_size)
