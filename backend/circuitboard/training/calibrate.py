"""A TopK layer made a JumpReLU layer that circuit-tracer 0.5.0 loads (it has no TopK; issue 17).

TopK picks k features per token; JumpReLU fires a feature wherever its pre-activation passes the feature's own
threshold. Each feature's threshold is set so that it fires on as many rows of a sample of the train split as
TopK selected it on (the same firing rate, so L0 stays near k), and the decoder and its bias are then refitted
by least squares to those codes, pulled towards TopK's decoder (a feature seen on few rows keeps it); the encoder
and the skip are kept.
"""

from __future__ import annotations

import torch

from circuitboard.engine.transcoder_files import LayerTensors

# Measured on Gemma 3 270M layers 0 / 12 (TopK held-out EV .983 / .670): refit on 32k rows with a weak pull
# (0.01) .984 / .633, on 50k rows with 0.1 .984 / .670 and with 1.0 .981 / .674, on 100k rows with 0.01 .986 / .678.
PRIOR = 0.3  # the pull towards TopK's decoder, as a share of the Gram matrix's mean diagonal
CHUNK = 4096  # rows at a time
ROWS = 49_152  # an evenly spaced sample of the train split: the refit gains from more rows, at ~0.1 ms a row
THRESHOLD_ROWS = 16_384  # ... of which the thresholds (quantiles) need only these


@torch.no_grad()
def topk_to_jumprelu(t: LayerTensors, x: torch.Tensor, y: torch.Tensor) -> LayerTensors:
    """`t` (a TopK layer on raw activations, decoder in memory) as a JumpReLU layer, calibrated on train rows
    x, y [n, d] (any float dtype)."""
    assert t.k is not None and t.W_dec is not None, "a TopK layer with its decoder"
    step = max(1, len(x) // ROWS)
    xs, ys = x[::step].float(), y[::step].float()
    pre = torch.cat([_pre(t, xs[i : i + CHUNK]) for i in range(0, len(xs), CHUNK)])
    threshold = rate_thresholds(pre[:: max(1, len(pre) // THRESHOLD_ROWS)], t.k)
    W_dec, b_dec = _refit_decoder(pre, threshold, xs, ys, t)
    return LayerTensors(W_enc=t.W_enc, b_enc=t.b_enc, b_dec=b_dec, W_dec=W_dec, W_skip=t.W_skip, threshold=threshold)


def _pre(t: LayerTensors, x: torch.Tensor) -> torch.Tensor:
    return torch.addmm(t.b_enc, x.float(), t.W_enc.T)


def rate_thresholds(pre: torch.Tensor, k: int) -> torch.Tensor:
    """Per feature, the pre-activation above which it fires on as many rows as TopK(k) selects it on: its
    (count + 1)-th largest value (a feature TopK never selected gets one above every value it took: silent)."""
    n, width = pre.shape
    want = torch.zeros(width, dtype=torch.long)
    for i in range(0, n, CHUNK):
        top = pre[i : i + CHUNK].topk(k, dim=1)
        want += torch.bincount(top.indices[top.values > 0], minlength=width)
    cols = pre.T.contiguous()
    # most features fire rarely: one top-k over every column covers them; the few frequent ones are sorted alone
    kk = min(n, max(1, int(torch.quantile(want.float(), 0.99))) + 1)
    col_top = cols.topk(kk, dim=1).values
    thr = col_top[torch.arange(width), want.clamp(max=kk - 1)]
    for f in (want >= kk).nonzero().flatten().tolist():
        thr[f] = cols[f].topk(min(n, int(want[f]) + 1)).values[-1]
    silent = want == 0
    thr[silent] = cols[silent].max(1).values.abs() * 2 + 1
    return thr.clamp_min(1e-6)


def _refit_decoder(
    pre: torch.Tensor, threshold: torch.Tensor, x: torch.Tensor, y: torch.Tensor, t: LayerTensors
) -> tuple[torch.Tensor, torch.Tensor]:
    """argmin ‖codes @ W + b − target‖² + λ‖[W; b] − [W_topk; b_topk]‖², the Gram matrix accumulated from the
    pairs of each row's nonzero codes (a few tens per row) rather than a dense [width, n] x [n, width] product;
    index `width` is the bias, a feature that always fires."""
    assert t.W_dec is not None
    width, d = t.W_dec.shape
    gram = torch.zeros((width + 1) * (width + 1))
    rhs = torch.zeros(width + 1, d)
    for i in range(0, len(pre), CHUNK):
        p = pre[i : i + CHUNK]
        target = y[i : i + CHUNK] - (0 if t.W_skip is None else x[i : i + CHUNK] @ t.W_skip.T)
        rows, cols = (p > threshold).nonzero(as_tuple=True)
        vals = p[rows, cols]
        left, right = _row_pairs(rows)
        gram.index_add_(0, cols[left] * (width + 1) + cols[right], vals[left] * vals[right])
        sums = torch.zeros(width).index_add_(0, cols, vals)  # the pairs (feature, bias) and (bias, feature)
        gram.view(width + 1, width + 1)[width, :width] += sums
        gram.view(width + 1, width + 1)[:width, width] += sums
        codes = torch.sparse_coo_tensor(torch.stack([cols, rows]), vals, (width, len(p)), check_invariants=False)
        rhs[:width] += torch.sparse.mm(codes, target)
        rhs[width] += target.sum(0)
    G = gram.view(width + 1, width + 1)
    G[width, width] = len(pre)
    lam = PRIOR * float(G.diagonal().mean())
    G += lam * torch.eye(width + 1)
    prior = torch.cat([t.W_dec, t.b_dec[None]])
    beta = torch.cholesky_solve(rhs + lam * prior, torch.linalg.cholesky(G.double()).float())  # G is SPD
    return beta[:width].contiguous(), beta[width].contiguous()


def _row_pairs(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ordered pair (i, j) of entries that share a row, for row-sorted entries (`nonzero`'s order)."""
    count = torch.bincount(rows)
    start = torch.cumsum(count, 0) - count
    per = count[rows]  # each entry pairs with every entry of its row
    left = torch.arange(len(rows)).repeat_interleave(per)
    offset = torch.arange(len(left)) - (torch.cumsum(per, 0) - per).repeat_interleave(per)
    return left, start[rows].repeat_interleave(per) + offset


@torch.no_grad()
def evaluate_layer(t: LayerTensors, x: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> dict:
    """Held-out figures of a written per-layer JumpReLU layer on raw rows x, y: EV, NMSE, L0, dead fraction and,
    with a skip, the skip's EV alone."""
    assert t.threshold is not None and t.W_dec is not None
    width = t.W_enc.shape[0]
    fired = torch.zeros(width, dtype=torch.bool)
    sse = sse_skip = power = l0 = 0.0
    mean = y.float().mean(0)
    sst = 0.0
    for i in range(0, len(x), chunk):
        xb, yb = x[i : i + chunk].float(), y[i : i + chunk].float()
        pre = _pre(t, xb)
        a = pre * (pre > t.threshold)
        skip = 0 if t.W_skip is None else xb @ t.W_skip.T
        sse += (yb - (a @ t.W_dec + t.b_dec + skip)).pow(2).sum().item()
        sse_skip += (yb - (skip + t.b_dec)).pow(2).sum().item()
        power += yb.pow(2).sum().item()
        sst += (yb - mean).pow(2).sum().item()
        fired |= (a > 0).any(0)
        l0 += (a > 0).sum().item()
    out = {"explained_variance": 1 - sse / sst, "nmse": sse / power, "l0": l0 / len(x)}
    out["dead_fraction"] = 1 - fired.float().mean().item()
    if t.W_skip is not None:
        out["explained_variance_skip_only"] = 1 - sse_skip / sst
    return out
