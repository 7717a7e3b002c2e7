"""Per-feature statistics of one layer, accumulated chunk by chunk over sparse (feature, token, value)
triplets, every update vectorised:

- top activations: candidates above their feature's current K-th best are sorted (feature, value) and
  merged row-wise into a [F, K] table — after the first chunks almost nothing passes the filter;
- quantile examples: a uniform reservoir sample (largest random keys) the same way, from which examples at
  evenly spaced activation quantiles are picked (`layer_rows`);
- histogram: exact counts in bins over [0, 2^e_f], doubling the range (merging bin pairs) whenever a
  feature's maximum grows — one pass, no second read of the cache;
- input tokens: activation mass per (feature, token id) in a dense table over the corpus' token ids.
"""

from __future__ import annotations

import math

import torch

from circuitboard.atlas.params import AtlasParams


def candidates_topk(
    f: torch.Tensor, key: torch.Tensor, payload: list[torch.Tensor], F: int, K: int, floor: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]] | None:
    """Per-row top-K of sparse candidates (row f, key) as dense [F, K] tables (-inf / -1 padded).

    Candidates not above their row's current K-th best (`floor`) are dropped first: after the first chunks
    almost all are, so the two sorts run on a handful of entries.
    """
    keep = key > floor[f]
    if not bool(keep.any()):
        return None
    f, key = f[keep], key[keep]
    payload = [p[keep] for p in payload]
    key_s, order = key.sort(descending=True)
    f_s, order2 = f[order].sort(stable=True)  # grouped by row, descending key within a row
    order = order[order2]
    key_s = key_s[order2]
    counts = torch.bincount(f_s, minlength=F)
    rank = torch.arange(f_s.numel()) - (counts.cumsum(0) - counts)[f_s]
    sel = rank < K
    rows, cols = f_s[sel], rank[sel]
    out_k = torch.full((F, K), float("-inf"))
    out_k[rows, cols] = key_s[sel]
    outs = []
    for p in payload:
        t = torch.full((F, K), -1, dtype=p.dtype) if p.dtype == torch.int64 else torch.zeros(F, K, dtype=p.dtype)
        t[rows, cols] = p[order][sel]
        outs.append(t)
    return out_k, outs


def merge_rows(
    key: torch.Tensor, payload: list[torch.Tensor], new_key: torch.Tensor, new_payload: list[torch.Tensor]
) -> None:
    """Row-wise merge of two [F, K] top tables (dense, no sorting of anything but 2K columns)."""
    K = key.shape[1]
    allk = torch.cat([key, new_key], 1)
    v, i = allk.topk(K, dim=1)
    key.copy_(v)
    for t, n in zip(payload, new_payload, strict=True):
        t.copy_(torch.cat([t, n], 1).gather(1, i))


class LayerStats:
    """All per-feature accumulators of one layer (see the module docstring)."""

    def __init__(self, F: int, p: AtlasParams, n_in_vocab: int, gen: torch.Generator):
        self.F, self.p, self.gen = F, p, gen
        self.count = torch.zeros(F, dtype=torch.int64)
        self.sum = torch.zeros(F, dtype=torch.float64)
        self.top_v = torch.full((F, p.n_top), float("-inf"))
        self.top_g = torch.full((F, p.n_top), -1, dtype=torch.int64)
        self.res_k = torch.full((F, p.n_reservoir), float("-inf"))
        self.res_v = torch.zeros(F, p.n_reservoir)
        self.res_g = torch.full((F, p.n_reservoir), -1, dtype=torch.int64)
        self.nb = p.hist_bins
        self.hist = torch.zeros(F, self.nb, dtype=torch.int64)
        self.hist_e = torch.full((F,), -126, dtype=torch.int64)  # range of feature f is [0, 2^e_f]
        self.n_in = n_in_vocab
        self.in_sum = torch.zeros(F * n_in_vocab, dtype=torch.float32)
        self.in_cnt = torch.zeros(F * n_in_vocab, dtype=torch.int32)

    def update(self, f: torch.Tensor, g: torch.Tensor, tok_c: torch.Tensor, v: torch.Tensor) -> None:
        """One chunk of nonzero activations: feature f, global cache row g, compact token id tok_c (-1 =
        untracked), value v."""
        F = self.F
        if f.numel() == 0:
            return
        self.count += torch.bincount(f, minlength=F)
        self.sum += torch.bincount(f, weights=v.double(), minlength=F)
        new = candidates_topk(f, v, [g], F, self.p.n_top, self.top_v[:, -1])
        if new is not None:
            merge_rows(self.top_v, [self.top_g], new[0], new[1])
        # uniform reservoir: the R activations with the largest random keys are a uniform sample of the
        # feature's activations, so evenly spaced picks from it sit at evenly spaced quantiles
        u = torch.rand(v.shape, generator=self.gen)
        new = candidates_topk(f, u, [v, g], F, self.p.n_reservoir, self.res_k[:, -1])
        if new is not None:
            merge_rows(self.res_k, [self.res_v, self.res_g], new[0], new[1])
        self._hist_update(f, v)
        keep = tok_c >= 0
        flat = f[keep] * self.n_in + tok_c[keep]
        self.in_sum.index_add_(0, flat, v[keep])
        self.in_cnt.index_add_(0, flat, torch.ones_like(flat, dtype=torch.int32))

    def _hist_update(self, f: torch.Tensor, v: torch.Tensor) -> None:
        nb = self.nb
        cmax = torch.zeros(self.F).scatter_reduce_(0, f, v, reduce="amax")
        grown = cmax > torch.pow(2.0, self.hist_e.float())  # only features whose range must double
        if bool(grown.any()):
            rows = grown.nonzero().squeeze(1)
            need = torch.ceil(torch.log2(cmax[rows].double())).long()
            grow = need - self.hist_e[rows]
            # Doubling the range merges bin pairs; after log2(nb)+1 doublings all counts sit in bin 0.
            for j in range(min(int(grow.max()), int(math.log2(nb)) + 1)):
                sub = rows[grow > j]
                h = self.hist[sub].view(-1, nb // 2, 2).sum(-1)
                self.hist[sub] = torch.cat([h, torch.zeros_like(h)], dim=1)
            self.hist_e[rows] = need
        inv = torch.pow(2.0, (-self.hist_e).float()) * nb
        b = (v * inv[f]).long().clamp_(0, nb - 1)
        self.hist.view(-1).index_add_(0, f * nb + b, torch.ones_like(b))
