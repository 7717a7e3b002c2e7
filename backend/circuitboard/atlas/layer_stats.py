"""Per-feature statistics of one layer, accumulated chunk by chunk over sparse (feature, token, value)
triplets, every update vectorised:

- top activations: candidates above their feature's current K-th best are sorted (feature, value) and
  merged row-wise into a [F, K] table — after the first chunks almost nothing passes the filter;
- quantile examples: a uniform reservoir sample (largest random keys) the same way, from which examples at
  evenly spaced activation quantiles are picked (`layer_rows`);
- histogram: exact counts in bins over [0, 2^e_f], doubling the range (merging bin pairs) whenever a
  feature's maximum grows — one pass, no second read of the cache;
- input tokens: activation mass per (feature, token id) in a dense table over the corpus' token ids.

The tables live on the scan's device (`LayerStats(device=)`) and an update reads nothing back to the host there:
every output has a shape fixed by F and K, candidates that do not pass the filter are masked rather than dropped
(`compact=False`). On the CPU, where reads are free, they are dropped first (`compact=True`, the default there),
which keeps the sorts tiny; both give the same tables, up to the order of tied activations
(tests/atlas/test_atlas_device_residency.py).
"""

from __future__ import annotations

import math

import torch

from circuitboard.atlas.params import AtlasParams
from circuitboard.data.activations import to_device


def _pad(p: torch.Tensor) -> int | float:
    """What an empty slot of a payload table holds: -1 for ids, 0 for values."""
    return -1 if p.dtype == torch.int64 else 0.0


def candidates_topk(
    f: torch.Tensor,
    key: torch.Tensor,
    payload: list[torch.Tensor],
    F: int,
    K: int,
    floor: torch.Tensor,
    compact: bool | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]] | None:
    """Per-row top-K of sparse candidates (row f, key) as dense [F, K] tables (-inf / -1 padded).

    Candidates not above their row's current K-th best (`floor`) can never enter the table. `compact` (the
    default on the CPU) drops them first: after the first chunks almost all are, so the two sorts run on a
    handful of entries, and None is returned when none is left. Otherwise (a device) they are masked to empty
    slots, so that no output's shape depends on the data and nothing is read back.
    """
    keep = key > floor[f]
    if compact if compact is not None else key.device.type == "cpu":
        if not bool(keep.any()):
            return None
        f, key = f[keep], key[keep]
        payload = [p[keep] for p in payload]
    else:
        key = key.masked_fill(~keep, float("-inf"))
        payload = [p.masked_fill(~keep, _pad(p)) for p in payload]
    key_s, order = key.sort(descending=True)
    f_s, order2 = f[order].sort(stable=True)  # grouped by row, descending key within a row
    order = order[order2]
    key_s = key_s[order2]
    counts = torch.zeros(F, dtype=torch.int64, device=f.device).index_add_(0, f_s, torch.ones_like(f_s))
    rank = torch.arange(f_s.numel(), device=f.device) - (counts.cumsum(0) - counts)[f_s]
    # ranks past K go to a spare column K, dropped after: a scatter of fixed size instead of a mask
    rows, cols = f_s, rank.clamp_max(K)
    out_k = torch.full((F, K + 1), float("-inf"), device=f.device)
    out_k[rows, cols] = key_s
    outs = []
    for p in payload:
        t = torch.full((F, K + 1), _pad(p), dtype=p.dtype, device=f.device)
        t[rows, cols] = p[order]
        outs.append(t[:, :K])
    return out_k[:, :K], outs


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
    """All per-feature accumulators of one layer, on `device` (see the module docstring)."""

    def __init__(
        self,
        F: int,
        p: AtlasParams,
        n_in_vocab: int,
        gen: torch.Generator,
        device: torch.device | str = "cpu",
        compact: bool | None = None,
    ):
        dev = self.device = torch.device(device)
        self.F, self.p, self.gen = F, p, gen  # gen: on the CPU, so that every device draws the same sample
        self.compact = dev.type == "cpu" if compact is None else compact
        self.count = torch.zeros(F, dtype=torch.int64, device=dev)
        self.sum = torch.zeros(F, dtype=torch.float64, device=dev)
        self.top_v = torch.full((F, p.n_top), float("-inf"), device=dev)
        self.top_g = torch.full((F, p.n_top), -1, dtype=torch.int64, device=dev)
        self.res_k = torch.full((F, p.n_reservoir), float("-inf"), device=dev)
        self.res_v = torch.zeros(F, p.n_reservoir, device=dev)
        self.res_g = torch.full((F, p.n_reservoir), -1, dtype=torch.int64, device=dev)
        self.nb = p.hist_bins
        self.hist = torch.zeros(F, self.nb, dtype=torch.int64, device=dev)
        self.hist_e = torch.full((F,), -126, dtype=torch.int64, device=dev)  # range of feature f is [0, 2^e_f]
        self.n_in = n_in_vocab
        self.in_sum = torch.zeros(F * n_in_vocab, dtype=torch.float32, device=dev)
        self.in_cnt = torch.zeros(F * n_in_vocab, dtype=torch.int32, device=dev)

    _TABLES = ("count", "sum", "top_v", "top_g", "res_k", "res_v", "res_g", "hist", "hist_e", "in_sum", "in_cnt")

    def to(self, device: torch.device | str) -> LayerStats:
        """The tables moved to `device` (after a scan: once per layer, to make the rows on the CPU)."""
        for name in self._TABLES:
            setattr(self, name, getattr(self, name).to(device))
        self.device = torch.device(device)
        return self

    def update(self, f: torch.Tensor, g: torch.Tensor, tok_c: torch.Tensor, v: torch.Tensor) -> None:
        """One chunk of nonzero activations: feature f, global cache row g, compact token id tok_c (-1 =
        untracked), value v (all on the tables' device)."""
        F = self.F
        if f.numel() == 0:
            return
        self.count.index_add_(0, f, torch.ones_like(f))
        # this chunk's sums first, then added: the float64 rounding of a bincount with weights
        self.sum += torch.zeros_like(self.sum).index_add_(0, f, v.double())
        new = candidates_topk(f, v, [g], F, self.p.n_top, self.top_v[:, -1], self.compact)
        if new is not None:
            merge_rows(self.top_v, [self.top_g], new[0], new[1])
        # uniform reservoir: the R activations with the largest random keys are a uniform sample of the
        # feature's activations, so evenly spaced picks from it sit at evenly spaced quantiles
        u = to_device(torch.rand(v.shape, generator=self.gen), self.device)
        new = candidates_topk(f, u, [v, g], F, self.p.n_reservoir, self.res_k[:, -1], self.compact)
        if new is not None:
            merge_rows(self.res_k, [self.res_v, self.res_g], new[0], new[1])
        self._hist_update(f, v)
        # untracked tokens (-1) add nothing to row 0 of their feature rather than being dropped (no mask)
        keep = tok_c >= 0
        flat = f * self.n_in + tok_c.clamp_min(0)
        self.in_sum.index_add_(0, flat, v * keep)
        self.in_cnt.index_add_(0, flat, keep.to(torch.int32))

    def _hist_update(self, f: torch.Tensor, v: torch.Tensor) -> None:
        nb = self.nb
        cmax = torch.zeros(self.F, device=v.device).scatter_reduce_(0, f, v, reduce="amax")
        grown = cmax > torch.pow(2.0, self.hist_e.float())  # only features whose range must double
        need = torch.where(grown, torch.ceil(torch.log2(cmax.double())).long(), self.hist_e)
        # Doubling the range g times merges bins 2^g at a time: old bin i goes to i >> g (all to bin 0 once
        # 2^g >= nb). One fixed-size scatter for every feature (g = 0 leaves a row as it is).
        shift = (need - self.hist_e).clamp(0, int(math.log2(nb)) + 1)
        to_bin = torch.arange(nb, device=v.device) >> shift.unsqueeze(1)
        self.hist = torch.zeros_like(self.hist).scatter_add_(1, to_bin, self.hist)
        self.hist_e = need
        inv = torch.pow(2.0, (-self.hist_e).float()) * nb
        b = (v * inv[f]).long().clamp_(0, nb - 1)
        self.hist.view(-1).index_add_(0, f * nb + b, torch.ones_like(b))
