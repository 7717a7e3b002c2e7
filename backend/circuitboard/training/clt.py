"""The cross-layer transcoder as trained: every layer's encoder reads that layer's MLP input, and its decoders
write into that layer's MLP output and every later one's (`clt_train.py` runs the steps).

Work happens in normalised units, one scalar per layer and side (x_l / sx_l -> y_l / sy_l); `export` folds them
in. Only the selected (layer, token, feature) triples carry gradient: pre-activations are computed without grad
for the whole width, the selected ones are made differentiable through `_PairsPre`, whose backward is a sparse
product, and decoders are gathered with `F.embedding_bag`. TopK selects k per token and layer; JumpReLU selects
every pre-activation above its threshold less half the bandwidth, so the thresholds get the straight-through
gradient of the ones just below them too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from circuitboard.data.activations import to_device
from circuitboard.precision import compute_dtype
from circuitboard.training.calibrate import rate_thresholds
from circuitboard.training.config import TrainConfig
from circuitboard.training.residency import fired_latents
from circuitboard.training.transcoder import lsq_affine

BANDWIDTH = 0.05  # the JumpReLU threshold's straight-through kernel width (normalised pre-activation units)


class _PairsPre(torch.autograd.Function):
    """`pre_sel` (pre-activations at (row, feature) pairs, computed without grad) made differentiable in W_enc
    and b_enc; the backward is O(pairs · d), not O(batch · width · d)."""

    @staticmethod
    def forward(ctx: Any, W_enc: torch.Tensor, b_enc: torch.Tensor, x: torch.Tensor, rows: torch.Tensor,
                feats: torch.Tensor, pre_sel: torch.Tensor) -> torch.Tensor:  # fmt: skip
        ctx.save_for_backward(x, rows, feats)
        ctx.width = W_enc.shape[0]
        return pre_sel.clone()

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, rows, feats = ctx.saved_tensors
        g = g.float()
        gb = torch.zeros(ctx.width, dtype=torch.float32, device=g.device).index_add_(0, feats, g)
        if g.device.type != "cpu":  # a dense product is what a GPU does fastest (the sparse one is a CPU trick)
            G = torch.zeros(len(x), ctx.width, dtype=torch.float32, device=g.device).index_put_((rows, feats), g)
            return G.T @ x.float(), gb, None, None, None, None
        S = torch.sparse_coo_tensor(torch.stack([feats, rows]), g, (ctx.width, len(x)), check_invariants=False)
        return torch.sparse.mm(S, x.float()), gb, None, None, None, None


class _JumpReLU(torch.autograd.Function):
    """Elementwise pre · H(pre - θ) with a straight-through rectangle-kernel gradient for log θ."""

    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor, log_thr: torch.Tensor) -> torch.Tensor:
        thr = log_thr.exp()
        ctx.save_for_backward(pre, thr)
        return pre * (pre > thr)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre, thr = ctx.saved_tensors
        near = ((pre - thr).abs() < BANDWIDTH / 2).to(g.dtype)
        return g * (pre > thr), -(thr / BANDWIDTH) * g * near * pre  # d/dlog θ = θ d/dθ


@dataclass
class Codes:
    """One layer's selected features for a batch, row-major: feature `feats[j]` of token `rows[j]` with value
    `vals[j]` (with grad); `offsets` [B] where each token's run starts (for `F.embedding_bag`)."""

    rows: torch.Tensor
    feats: torch.Tensor
    vals: torch.Tensor
    offsets: torch.Tensor

    @property
    def active(self) -> torch.Tensor:
        return self.vals > 0


class CrossLayerTranscoder(torch.nn.Module):
    """Layers 0..L-1 in normalised units. W_dec[l] is stored flat, [width, (L - l) · d]: block j is what a feature
    of layer l adds to layer l + j's MLP output."""

    def __init__(self, n_layers: int, d: int, width: int, k: int, activation: str = "jumprelu", skip: bool = False):
        super().__init__()
        self.n_layers, self.d, self.width, self.k, self.activation = n_layers, d, width, k, activation
        L = n_layers
        self.W_enc = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(width, d)) for _ in range(L)])
        self.b_enc = torch.nn.Parameter(torch.zeros(L, width))
        self.W_dec = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(width, (L - i) * d)) for i in range(L)])
        self.b_dec = torch.nn.Parameter(torch.zeros(L, d))
        self.W_skip = torch.nn.Parameter(torch.zeros(L, d, d)) if skip else None
        self.log_thr = torch.nn.Parameter(torch.full((L, width), math.log(0.1))) if activation == "jumprelu" else None

    def pre(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Dense pre-activations [B, width] without grad, in the machine's fast matmul dtype."""
        dt = compute_dtype(x.device.type)
        with torch.no_grad():
            return torch.addmm(self.b_enc[layer].to(dt), x.to(dt), self.W_enc[layer].to(dt).T).float()

    def encode(self, layer: int, x: torch.Tensor) -> Codes:
        pre = self.pre(layer, x)
        with torch.no_grad():
            rows, feats = self._select(layer, pre)
        pre_sel = _PairsPre.apply(self.W_enc[layer], self.b_enc[layer], x, rows, feats, pre[rows, feats])
        if self.log_thr is None:
            vals = F.relu(pre_sel)
        else:
            vals = _JumpReLU.apply(pre_sel, self.log_thr[layer][feats])
        # per-token counts by a scatter (bincount reads its input's max back to size its output)
        counts = torch.zeros(len(x), dtype=torch.long, device=x.device).index_add_(0, rows, torch.ones_like(rows))
        offsets = torch.cumsum(counts, 0) - counts
        return Codes(rows, feats, vals, offsets)

    def _select(self, layer: int, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, feats) of the selected pre-activations, row-major: TopK's k per token, or JumpReLU's every one
        above its threshold less half the bandwidth."""
        if self.log_thr is None:
            feats = pre.topk(self.k, dim=1, sorted=False).indices
            return torch.arange(len(pre), device=pre.device).repeat_interleave(self.k), feats.reshape(-1)
        # how many pass is data: the one host read of a training step, per layer (TopK has none)
        rows, feats = (pre > self.log_thr[layer].exp() - BANDWIDTH / 2).nonzero(as_tuple=True)
        return rows, feats

    def decode(self, codes: list[Codes], xs: torch.Tensor) -> torch.Tensor:
        """[L, B, d] reconstruction of every layer's MLP output from every layer's codes; xs [L, B, d]."""
        L, B, d = xs.shape
        flat = self.b_dec.reshape(1, L * d).expand(B, L * d)
        for layer, c in enumerate(codes):
            if len(c.feats) == 0:
                continue
            y = F.embedding_bag(c.feats, self.W_dec[layer], c.offsets, mode="sum", per_sample_weights=c.vals.float())
            # layer l writes into layers l..L-1: its [B, (L - l) d] block, placed by padding, not by writing into
            # a slice (whose backward would zero-fill a whole [L, B, d] gradient for every layer)
            flat = flat + F.pad(y, (layer * d, 0))
        out = flat.view(B, L, d).transpose(0, 1)
        if self.W_skip is not None:
            out = out + torch.bmm(xs, self.W_skip.transpose(1, 2))
        return out

    @torch.no_grad()
    def decoder_norms(self, layer: int) -> torch.Tensor:
        """[width] norm of each feature's decoder over every layer it writes to (the sparsity penalty's weight).
        A constant of the step: its gradient would be a dense pass over every decoder, and tanh(c·‖W‖·a) is the
        same whatever way the scale is split between ‖W‖ and a."""
        return self.W_dec[layer].norm(dim=1)

    @torch.no_grad()
    def to_jumprelu(self, xs: torch.Tensor) -> None:
        """A TopK CLT made JumpReLU (what circuit-tracer loads): each feature's threshold set so that it fires on
        as many of the rows xs [L, n, d] (normalised) as TopK selects it on (`calibrate.rate_thresholds`)."""
        thr = torch.stack([rate_thresholds(self.pre(layer, xs[layer]).cpu(), self.k) for layer in range(self.n_layers)])
        self.log_thr = torch.nn.Parameter(thr.log().to(self.b_enc.device))
        self.activation = "jumprelu"

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        """TopK: unit-norm decoders (over all the layers a feature writes to), so that magnitudes compare."""
        for W in self.W_dec:
            W.div_(W.norm(dim=1, keepdim=True).clamp_min(1e-8))


def sparsity_penalty(tc: CrossLayerTranscoder, codes: list[Codes], batch: int, c: float) -> torch.Tensor:
    """Σ_l Σ_i tanh(c · ‖W_dec,i^l‖ · a_i^l) per token (Anthropic's circuit-tracing CLTs): a smooth count of the
    active features that cannot be lowered by shrinking activations against larger decoders."""
    total = torch.zeros((), device=codes[0].vals.device)
    for layer, cd in enumerate(codes):
        norms = tc.decoder_norms(layer)[cd.feats]
        total = total + torch.tanh(c * norms * cd.vals).sum()
    return total / batch


# ---------------------------------------------------------------------------------------------- initialisation


@torch.no_grad()
def init_clt(
    tc: CrossLayerTranscoder, xs: torch.Tensor, ys: torch.Tensor, cfg: TrainConfig, gen: torch.Generator
) -> None:
    """xs, ys [L, n, d]: a normalised fp32 sample. Each feature of layer l starts as "inputs like x_j -> the part
    of y_j (at layer l) that the skip or the mean misses", with nothing yet for later layers: the CLT starts as a
    per-layer transcoder and learns what to write further on."""
    for layer in range(tc.n_layers):
        x, y = xs[layer], ys[layer]
        if tc.W_skip is not None:
            W, b = lsq_affine(x[:32_768], y[:32_768])
            tc.W_skip[layer].copy_(W)
            tc.b_dec[layer].copy_(b)
            resid = y - x @ W.T - b
        else:
            tc.b_dec[layer].copy_(y.mean(0))
            resid = y - y.mean(0)
        rows = torch.randint(0, len(x), (tc.width,), generator=gen)
        xc = x[rows] - x.mean(0)
        tc.W_enc[layer].copy_(xc / xc.norm(dim=1, keepdim=True).clamp_min(1e-6))
        tc.W_dec[layer].zero_()
        tc.W_dec[layer][:, : tc.d] = resid[rows] / resid[rows].norm(dim=1, keepdim=True).clamp_min(1e-8)
        _scale_encoder(tc, layer, x[:8192], resid[:8192])


def _scale_encoder(tc: CrossLayerTranscoder, layer: int, x: torch.Tensor, resid: torch.Tensor) -> None:
    """Encoder scaled so that the k strongest features' first guess is the least-squares multiple of what they
    should add (else they swamp the skip's or the mean's answer); JumpReLU thresholds then at the (1 - k/width)
    quantile of the pre-activations, about k active per token."""
    pre = tc.pre(layer, x)
    top, idx = pre.topk(tc.k, dim=1)
    add = F.embedding_bag(idx, tc.W_dec[layer][:, : tc.d], per_sample_weights=top.relu(), mode="sum")
    alpha = float((add * resid).sum() / add.pow(2).sum().clamp_min(1e-12))
    alpha = min(max(alpha, 1e-2), 1.0)
    tc.W_enc[layer].mul_(alpha)
    tc.b_enc[layer].mul_(alpha)
    if tc.log_thr is not None:
        sample = (pre * alpha)[:2048]
        rank = max(1, round(len(sample) * tc.k / tc.width))  # the (1 - k/width) quantile, by rank (fast)
        q = sample.topk(rank, dim=0).values[-1].clamp_min(1e-3)
        tc.log_thr[layer].copy_(q.log())


# ---------------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_clt(
    tc: CrossLayerTranscoder,
    chunks: Iterable[tuple[torch.Tensor, torch.Tensor]],
    sx: torch.Tensor,
    sy: torch.Tensor,
    batch: int = 2048,
) -> list[dict]:
    """Per layer on held-out rows (chunks of raw bf16 [L, n, d] pairs): explained variance, NMSE (error over
    the output's power), L0, dead fraction, and with a skip the EV of the skip alone."""
    L, dev = tc.n_layers, tc.b_enc.device
    acc = _Sums(L, tc.d, tc.width, dev)
    nx, ny = sx.to(dev)[:, None, None], sy.to(dev)[:, None, None]
    for x, y in chunks:
        for i in range(0, x.shape[1], batch):
            xb = to_device(x[:, i : i + batch], dev).float() / nx
            yb = to_device(y[:, i : i + batch], dev).float() / ny
            codes = [tc.encode(layer, xb[layer]) for layer in range(L)]
            skip = None if tc.W_skip is None else torch.bmm(xb, tc.W_skip.transpose(1, 2)) + tc.b_dec[:, None]
            acc.add(yb, tc.decode(codes, xb), codes, skip)
    return acc.results()


class _Sums:
    """Running per-layer sums of an evaluation, on the device (float64), read back once in `results`."""

    def __init__(self, L: int, d: int, width: int, dev: torch.device):
        f64 = torch.float64
        self.sse, self.sse_skip, self.power, self.l0 = (torch.zeros(L, dtype=f64, device=dev) for _ in range(4))
        self.y_sum, self.n = torch.zeros(L, d, dtype=f64, device=dev), 0
        self.fired, self.has_skip = torch.zeros(L, width, dtype=torch.bool, device=dev), False

    def add(self, yb: torch.Tensor, yh: torch.Tensor, codes: list[Codes], skip: torch.Tensor | None) -> None:
        self.sse += (yb - yh).pow(2).sum((1, 2)).double()
        self.power += yb.pow(2).sum((1, 2)).double()
        self.y_sum += yb.sum(1).double()
        self.n += yb.shape[1]
        if skip is not None:
            self.has_skip = True
            self.sse_skip += (yb - skip).pow(2).sum((1, 2)).double()
        for layer, c in enumerate(codes):
            act = c.active
            self.l0[layer] += act.sum()
            self.fired[layer] |= fired_latents(c.feats, act, self.fired.shape[1])

    def results(self) -> list[dict]:
        n = max(self.n, 1)
        sse, sse_skip, power, l0 = (t.cpu() for t in (self.sse, self.sse_skip, self.power, self.l0))
        sst = power - self.y_sum.cpu().pow(2).sum(1) / n
        dead = 1 - self.fired.float().mean(1).cpu()
        out = []
        for layer in range(len(sst)):
            res = {
                "explained_variance": float(1 - sse[layer] / sst[layer]),
                "nmse": float(sse[layer] / power[layer]),
                "l0": float(l0[layer] / n),
                "dead_fraction": float(dead[layer]),
            }
            if self.has_skip:
                res["explained_variance_skip_only"] = float(1 - sse_skip[layer] / sst[layer])
            out.append(res)
        return out
