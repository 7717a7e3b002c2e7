"""The sources of an attribution graph: every node that writes into the residual stream, and what it writes where.

The columns of the row buffer are [active features | errors (l·P + p) | tokens]. For each layer, every vector
written into the residual stream there (activation × decoder row, error vector) is padded per position so that
one batched matmul reads all the edges into that layer (`Writers.read`).
"""

from __future__ import annotations

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
        device = ctx.embeddings.device
        # Index bookkeeping stays on the CPU; vectors live on the model's device.
        self.active = torch.cat(feats).cpu() if feats else torch.zeros(0, 3, dtype=torch.long)
        self.values = torch.cat(vals)
        self.n_active = len(self.active)
        self.n_cols = self.n_active + L * P + P
        self.token_start = self.n_active + L * P
        # For each output layer, everything written there, padded per position so that one batched matmul reads
        # all its edges: vectors [P, n_max, d]; `flat` indexes the [P * n_max] products, `cols` the buffer columns.
        self.writers: list[Writers] = []
        by_layer: list[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = [
            [] for _ in range(L)
        ]  # (pos, col, vec)
        for src_layer in range(L):
            sel = (self.active[:, 0] == src_layer).nonzero(as_tuple=True)[0]
            if len(sel) == 0:
                continue
            rows = tset.decoder_rows(src_layer, self.active[sel, 2]) * self.values[sel.to(device), None, None]
            for k, out_layer in enumerate(tset.output_layers(src_layer)):
                by_layer[out_layer].append((self.active[sel, 1], sel, rows[:, k]))
        for layer in range(L):
            pos_all = [torch.arange(P)]
            col_all = [self.n_active + layer * P + torch.arange(P)]
            # As circuit-tracer: position 0 (BOS) is input-independent, so its error is a constant, not a node.
            errors = ctx.errors[layer].clone()
            errors[0] = 0
            vec_all = [errors]
            for pos, col, vec in by_layer[layer]:
                pos_all.append(pos)
                col_all.append(col)
                vec_all.append(vec)
            self.writers.append(Writers.build(torch.cat(pos_all), torch.cat(col_all), torch.cat(vec_all), P))


@dataclass
class Writers:
    vecs: torch.Tensor  # [P, n_max, d], zero padded
    flat: torch.Tensor  # [n] index into the flattened [P * n_max] products, sorted by position
    cols: torch.Tensor  # [n] buffer column of each
    upto: list[int]  # upto[p] = how many writers sit at positions < p

    @classmethod
    def build(cls, pos: torch.Tensor, cols: torch.Tensor, vecs: torch.Tensor, P: int) -> Writers:
        order = pos.argsort(stable=True)
        pos, cols = pos[order], cols[order]
        counts = torch.bincount(pos, minlength=P)
        n_max = int(counts.max())
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(len(pos)) - starts[pos]
        flat = pos * n_max + slot
        padded = torch.zeros(P * n_max, vecs.shape[-1], dtype=vecs.dtype, device=vecs.device)
        padded[flat.to(vecs.device)] = vecs[order.to(vecs.device)]
        upto = [0, *torch.cumsum(counts, 0).tolist()]
        return cls(padded.view(P, n_max, -1), flat.to(vecs.device), cols.to(vecs.device), upto)

    def read(self, g: torch.Tensor, out: torch.Tensor) -> None:
        """Add the edges of every writer at positions < g.shape[1] into `out` [B, n_cols], for gradients g [B, P, d]."""
        P = g.shape[1]
        n = self.upto[P]
        if n == 0:
            return
        prods = torch.bmm(g.transpose(0, 1), self.vecs[:P].transpose(1, 2))  # [P, B, n_max]
        prods = prods.transpose(0, 1).reshape(g.shape[0], -1)
        out.index_add_(1, self.cols[:n], prods[:, self.flat[:n]])
