"""The feature rows of one trace as they stream in: blocked storage, the greedy order's influence, the graph's rows.

A feature row has one entry per source: every active feature, every error, every token. Held dense, the rows of
a selection take budget × n_active floats, which grows with the prompt (2,000 rows × 588k active features at
1,024 tokens of Gemma 3 270M: 4.7 GB). Much of a row is structurally zero: a feature at layer l and position p
reads only features of layers < l at positions ≤ p. `RowStore` cuts each batch into runs of rows at one layer
and in one band of positions, keeps each run's rows only over the columns its rows can read (one block per run
of source layers; contiguous because active features are sorted by layer, then position) and the error and
token columns densely.

The greedy order needs, at each refresh, the influence of every feature not chosen yet, so the blocks stay
until the selection ends; then only the columns of the chosen features are gathered into the graph's rows
(Graph.rows: [selected + logits] × [selected | errors | tokens | logits]) and the blocks are dropped. With every
feature selected (nothing to rank) the rows go straight into the graph's rows instead.

Index bookkeeping (which rows, which columns) lives on the CPU, so nothing here waits on the device per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class _Block:
    row: int  # first row
    col: int  # first column
    values: torch.Tensor  # [B, width]


class RowStore:
    """Rows of the selected features, [budget, n_cols] in effect, stored as described above."""

    # A batch's rows are stored in runs of one layer and one band of positions (see _runs): at most
    # POSITION_BANDS bands, none narrower than MIN_BAND positions (a short prompt keeps one band: its blocks
    # stay few and its rows small).
    POSITION_BANDS = 16
    MIN_BAND = 64

    def __init__(
        self,
        active: torch.Tensor,
        n_cols: int,
        n_pos: int,
        budget: int,
        like: torch.Tensor,
        dense: torch.Tensor | None = None,
    ) -> None:
        """`active` [n_active, 3] (layer, pos, feature) sorted by (layer, pos), on the CPU; `like`: the dtype
        and device rows come in; `dense`: a [budget, n_cols] view to write every row into (every feature
        selected, in column order)."""
        self.n_active, self.n_cols, self.budget, self.n_pos = len(active), n_cols, budget, n_pos
        self.done = 0
        self.dense = dense
        self.sums = torch.zeros(budget, dtype=like.dtype, device=like.device)
        self.tail = None if dense is not None else like.new_zeros(budget, n_cols - self.n_active)
        self.blocks: list[_Block] = []
        n_layers = int(active[:, 0].max()) + 1 if len(active) else 0
        key = active[:, 0] * n_pos + active[:, 1]
        grid = torch.arange(n_layers)[:, None] * n_pos + torch.arange(n_pos)[None]
        # _ends[j][p]: one past the last active feature of layer j at a position ≤ p; _starts[j]: its first.
        self._ends: list[list[int]] = torch.searchsorted(key, grid, right=True).tolist()
        self._starts: list[int] = torch.searchsorted(key, grid[:, 0].contiguous()).tolist()

    def add(self, batch_rows: torch.Tensor, layers: torch.Tensor, positions: torch.Tensor) -> None:
        """Store the rows of a batch of features at `layers`, `positions` (CPU tensors) in the next rows."""
        r0, B = self.done, len(batch_rows)
        self.sums[r0 : r0 + B] = torch.linalg.vector_norm(batch_rows, ord=1, dim=1)
        if self.dense is not None:
            self.dense[r0 : r0 + B] = batch_rows
        else:
            assert self.tail is not None
            self.tail[r0 : r0 + B] = batch_rows[:, self.n_active :]
            for start, stop, layer, pos in self._runs(layers, positions):
                for a, b in self._ranges(layer, pos):
                    self.blocks.append(_Block(r0 + start, a, batch_rows[start:stop, a:b].clone()))
        self.done += B

    def _runs(self, layers: torch.Tensor, positions: torch.Tensor) -> list[tuple[int, int, int, int]]:
        """The batch cut into runs of consecutive rows at one layer and in one band of `POSITION_BAND`
        positions: (start, stop, deepest layer, last position) each. A run stores only the columns its own rows
        can read; one block for the whole batch would keep, for every row, what its deepest and last row reads
        (at 1,024 tokens ~0.43 of the active columns a row, against ~0.25 read)."""
        band = max(1, -(-self.n_pos // self.POSITION_BANDS), self.MIN_BAND)
        key = (layers * (self.n_pos // band + 1) + positions // band).tolist()
        cuts = [0] + [i for i in range(1, len(key)) if key[i] != key[i - 1]] + [len(key)]
        return [
            (a, b, int(layers[a:b].max()), int(positions[a:b].max())) for a, b in zip(cuts[:-1], cuts[1:], strict=True)
        ]

    def _ranges(self, top_layer: int, top_pos: int) -> list[tuple[int, int]]:
        """Column ranges that rows up to `top_layer`, `top_pos` can read: features of lower layers, up to top_pos."""
        out: list[tuple[int, int]] = []
        for j in range(min(top_layer, len(self._starts))):
            a, b = self._starts[j], self._ends[j][top_pos]
            if b <= a:
                continue
            if out and out[-1][1] == a:
                out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
        return out

    def gather(self, cols: torch.Tensor) -> torch.Tensor:
        """Entries of the stored rows at feature columns `cols` (CPU, < n_active): [done, len(cols)]."""
        device = self.sums.device
        if self.dense is not None:
            return self.dense[: self.done][:, cols.to(device)]
        out = self.sums.new_zeros(self.done, len(cols))
        for blk in self.blocks:
            inside = ((cols >= blk.col) & (cols < blk.col + blk.values.shape[1])).nonzero().squeeze(1)
            if len(inside):
                picked = blk.values[:, (cols[inside] - blk.col).to(device)]
                out[blk.row : blk.row + len(blk.values), inside.to(device)] = picked
        return out

    def weighted_abs(self, weights: torch.Tensor) -> torch.Tensor:
        """weights [done] @ |rows|: [n_cols]."""
        if self.dense is not None:
            return weights @ self.dense[: self.done].abs()
        assert self.tail is not None
        out = self.sums.new_zeros(self.n_cols)
        for blk in self.blocks:
            w = weights[blk.row : blk.row + len(blk.values)]
            out[blk.col : blk.col + blk.values.shape[1]] += w @ blk.values.abs()
        out[self.n_active :] = weights @ self.tail[: self.done].abs()
        return out

    def graph_rows(self, selected: torch.Tensor, logit_rows: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        """Graph.rows (fp32, CPU) for the features `selected` (CPU, in row order) and the logit rows: features
        then logits × [selected | errors | tokens | logits]. `out`: the rows `dense` was a view of, if any."""
        n_sel, n_logits = len(selected), len(logit_rows)
        width = n_sel + self.n_cols - self.n_active
        keep_cols = torch.cat([selected, torch.arange(self.n_active, self.n_cols)]).to(logit_rows.device)
        if out is None:
            out = torch.zeros(n_sel + n_logits, width + n_logits, dtype=torch.float32)
            if self.dense is not None:
                for start in range(0, n_sel, 1024):  # chunks: never a second full copy beside `out`
                    stop = min(start + 1024, n_sel)
                    out[start:stop, :width] = self.dense[start:stop][:, keep_cols].float().cpu()
            else:
                assert self.tail is not None
                out[:n_sel, :n_sel] = self.gather(selected).float().cpu()
                out[:n_sel, n_sel:width] = self.tail[:n_sel].float().cpu()
        self.blocks, self.tail = [], None  # the rest of each row is not part of the graph
        out[n_sel:, :width] = logit_rows[:, keep_cols].float().cpu()
        return out


def ranking_influence(
    store: RowStore,
    logit_rows: torch.Tensor,
    logit_weights: torch.Tensor,
    visited: torch.Tensor,
    n_layers: int,
) -> torch.Tensor:
    """Influence of every column on the logits through the rows computed so far (`visited`: their features,
    CPU, in row order), with Â the row-normalised |A|.

    Weights flow logits → features → ... only through visited rows, so the power iteration runs on the square
    block over the visited features; by linearity the influence on every column is then one product of the
    accumulated row weights with |rows|. A path of feature edges climbs a layer per step, so `n_layers` steps
    reach its end (Â is nilpotent).
    """
    logit_abs = logit_rows.abs()
    total = (logit_weights.to(logit_rows.dtype) / logit_abs.sum(1).clamp(min=1e-10)) @ logit_abs
    sums = store.sums[: store.done].clamp(min=1e-10)
    square = store.gather(visited).abs_()
    weight = total[visited.to(total.device)]
    accumulated = torch.zeros_like(weight)
    for _ in range(n_layers + 1):
        scaled = weight / sums
        accumulated += scaled
        weight = scaled @ square
    return total + store.weighted_abs(accumulated)
