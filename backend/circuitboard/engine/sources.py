"""The sources of an attribution graph: every node that writes into the residual stream, and what it writes where.

The columns of the row buffer are [active features | errors (l·P + p) | tokens]. For each layer, every vector
written into the residual stream there (activation × decoder row, error vector) is padded per position so that
a few batched matmuls read all the edges into that layer (`Writers.read`).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch

from circuitboard.engine.replacement import PromptContext
from circuitboard.engine.transcoders import TranscoderSet


class SourceTable:
    """Columns of the row buffer: [active features | errors (l·P + p) | tokens], and what each writes where."""

    def __init__(self, tset: TranscoderSet, ctx: PromptContext):
        L, P = len(ctx.acts), ctx.n_pos
        feats, vals = [], []
        for layer, a in enumerate(ctx.acts):
            pos, idx = a.nonzero(as_tuple=True)
            feats.append(torch.stack([torch.full_like(pos, layer), pos, idx], 1))
            vals.append(a[pos, idx])
        # Index bookkeeping stays on the CPU; vectors live on the model's device.
        self.active = torch.cat(feats).cpu() if feats else torch.zeros(0, 3, dtype=torch.long)
        self.values = torch.cat(vals)
        self.n_active = len(self.active)
        self.n_cols = self.n_active + L * P + P
        self.token_start = self.n_active + L * P
        # For each output layer, everything written there, in rounds of up to S per position so that a few
        # batched matmuls read all its edges (Writers).
        self._rows_of: dict[int, torch.Tensor] = {}  # a CLT's decoder rows by source layer, while building
        self.writers = [self._layer_writers(tset, ctx, layer) for layer in range(L)]
        self._rows_of.clear()

    def _layer_writers(self, tset: TranscoderSet, ctx: PromptContext, layer: int) -> Writers:
        """What is written into the residual stream at `layer`: the features that write there and its errors."""
        P = ctx.n_pos
        pos_all, col_all, vec_all = [], [], []
        for src in range(layer + 1) if tset.cross_layer else (layer,):
            sel = (self.active[:, 0] == src).nonzero(as_tuple=True)[0]
            if len(sel) == 0:
                continue
            pos_all.append(self.active[sel, 1])
            col_all.append(sel)
            vec_all.append(self._written(tset, src, sel, layer))
        errors = self._errors(tset, ctx, layer, pos_all, vec_all)
        # As circuit-tracer: position 0 (BOS) is input-independent, so its error is a constant, not a node.
        errors[0] = 0
        pos_all.append(torch.arange(P))
        col_all.append(self.n_active + layer * P + torch.arange(P))
        vec_all.append(errors)
        return Writers.build(torch.cat(pos_all), torch.cat(col_all), torch.cat(vec_all), P)

    @staticmethod
    def _errors(
        tset: TranscoderSet, ctx: PromptContext, layer: int, pos: list[torch.Tensor], written: list[torch.Tensor]
    ) -> torch.Tensor:
        """The error term of `layer` [P, d]: the true MLP output minus the replacement's (decoder bias, skip,
        and what the features write, summed per position from the vectors just read: decoder rows are read
        once per prompt)."""
        recon = tset.layers[layer].b_dec.expand(ctx.n_pos, -1).clone()
        if ctx.skip_out is not None:
            recon += ctx.skip_out[layer]
        if written:
            recon.index_add_(0, torch.cat(pos).to(recon.device), torch.cat(written))
        return ctx.mlp_out[layer] - recon

    def _written(self, tset: TranscoderSet, src: int, sel: torch.Tensor, layer: int) -> torch.Tensor:
        """activation × decoder row [n, d] written at `layer` by the active features `sel` of layer `src`. Decoder
        rows are read once: a PLT layer's are dropped as soon as its writers are built (one layer's at a time);
        a CLT keeps each source layer's until every layer is built."""
        rows = self._rows_of.get(src)
        if rows is None:
            device = self.values.device
            rows = tset.decoder_rows(src, self.active[sel, 2]) * self.values[sel.to(device), None, None]
            if tset.cross_layer:
                self._rows_of[src] = rows
        return rows[:, layer - src]

    def cast_vectors(self, dtype: torch.dtype) -> None:
        """Hold what the sources write in `dtype` (a reduced-precision trace multiplies them in it)."""
        for w in self.writers:
            w.cast(dtype)


@dataclass
class _Round:
    """Up to `S` writers at each of some positions: one batched matmul reads all their edges."""

    positions: list[int]  # sorted positions that have a writer in this round
    index: torch.Tensor | None  # those positions on the device (None: they are 0..k-1, read by slicing)
    vecs: torch.Tensor  # [k, S, d], zero padded
    flat: torch.Tensor  # [n] index into the flattened [k * S] products, sorted by position
    cols: torch.Tensor  # [n] buffer column of each
    upto: list[int]  # upto[p] = how many of this round's writers sit at positions < p

    @classmethod
    def build(
        cls,
        pos: torch.Tensor,
        cols: torch.Tensor,
        slot: torch.Tensor,
        vecs: torch.Tensor,
        which: torch.Tensor,
        S: int,
        P: int,
    ) -> _Round:
        """A round of writers at `pos` (sorted), each in `slot` < S of its position; `which` picks their `vecs`."""
        positions = torch.unique(pos)
        k = len(positions)
        flat = torch.searchsorted(positions, pos) * S + slot
        device = vecs.device
        padded = torch.zeros(k * S, vecs.shape[-1], dtype=vecs.dtype, device=device)
        padded[flat.to(device)] = vecs[which.to(device)]
        upto = [0, *torch.cumsum(torch.bincount(pos, minlength=P), 0).tolist()]
        index = None if torch.equal(positions, torch.arange(k)) else positions.to(device)
        return cls(positions.tolist(), index, padded.view(k, S, -1), flat.to(device), cols.to(device), upto)


@dataclass
class Writers:
    """Everything written into the residual stream at one layer, in rounds: round r holds the writers r·S..
    (r+1)·S − 1 of every position (S = the mean number per position). Padding every position to the busiest
    one's count instead costs memory in proportion to that count: on a long prompt a few positions with
    hundreds of active features made the table ~10× its contents."""

    rounds: list[_Round]

    @classmethod
    def build(cls, pos: torch.Tensor, cols: torch.Tensor, vecs: torch.Tensor, P: int) -> Writers:
        order = pos.argsort(stable=True)
        pos, cols = pos[order], cols[order]
        counts = torch.bincount(pos, minlength=P)
        slot = torch.arange(len(pos)) - (torch.cumsum(counts, 0) - counts)[pos]
        S = max(1, -(-len(pos) // P))
        rounds = []
        for r in range(int(slot.max()) // S + 1 if len(pos) else 0):
            sel = ((slot >= r * S) & (slot < (r + 1) * S)).nonzero().squeeze(1)
            rounds.append(_Round.build(pos[sel], cols[sel], slot[sel] - r * S, vecs, order[sel], S, P))
        return cls(rounds)

    def read(self, g: torch.Tensor, out: torch.Tensor) -> None:
        """Add the edges of every writer at positions < g.shape[1] into `out` [B, n_cols], for gradients g [B, P, d]."""
        P, B = g.shape[1], g.shape[0]
        gT = g.transpose(0, 1)
        for rd in self.rounds:
            n = rd.upto[P]
            if n == 0:
                continue
            k = bisect.bisect_left(rd.positions, P)
            g_at = gT[:k] if rd.index is None else gT[rd.index[:k]]
            prods = torch.bmm(g_at, rd.vecs[:k].transpose(1, 2))  # [k, B, S]
            prods = prods.transpose(0, 1).reshape(B, -1)
            out.index_add_(1, rd.cols[:n], prods[:, rd.flat[:n]].to(out.dtype))  # bf16 products: into fp32 rows

    def cast(self, dtype: torch.dtype) -> None:
        for rd in self.rounds:
            rd.vecs = rd.vecs.to(dtype)
