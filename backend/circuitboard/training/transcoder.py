"""One layer's TopK transcoder as trained: the module, its custom autograd function, its initialisation and its
held-out evaluation (`layer.py` runs the steps; a JumpReLU layer trains as a CLT of one layer, `clt.py`).

The encoder's backward touches only the k selected latents per token (`selected_pre`). The module works in
normalised units (x/sx -> y/sy); `export.export_layer` folds the scales in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from circuitboard.data.activations import to_device
from circuitboard.precision import compute_dtype
from circuitboard.training.config import TrainConfig
from circuitboard.training.residency import fired_latents

# ---------------------------------------------------------------------------------------------- model


class _SelectedPre(torch.autograd.Function):
    """Pre-activations of the selected latents, with a backward that touches only those latents.

    Forward returns `pre_sel` (computed without grad by the caller); backward scatters the gradient into
    W_enc / b_enc rows (sparse product), O(batch·k·d) instead of the dense O(batch·width·d)."""

    @staticmethod
    def forward(ctx, W_enc, b_enc, x, idx, pre_sel):
        ctx.save_for_backward(x, idx)
        ctx.width = W_enc.shape[0]
        return pre_sel.clone()

    @staticmethod
    def backward(ctx, g):
        x, idx = ctx.saved_tensors
        B, k = idx.shape
        g = g.float()
        # many selected (AuxK), or a GPU (any device but the CPU): the dense product is cheaper
        if k * 8 > ctx.width or g.device.type != "cpu":
            G = torch.zeros(B, ctx.width, dtype=torch.float32, device=g.device).scatter_add_(1, idx, g)
            return G.T @ x.float(), G.sum(0), None, None, None
        # a sparse [width, B] gradient matrix times x: ~15x faster than index_add of B·k rows on this CPU
        rows = torch.arange(B).repeat_interleave(k)
        S = torch.sparse_coo_tensor(
            torch.stack([idx.reshape(-1), rows]), g.reshape(-1), (ctx.width, B), check_invariants=False
        )
        gb = torch.zeros(ctx.width, dtype=torch.float32).index_add_(0, idx.reshape(-1), g.reshape(-1))
        return torch.sparse.mm(S, x.float()), gb, None, None, None


def selected_pre(
    W_enc: torch.Tensor, b_enc: torch.Tensor, x: torch.Tensor, idx: torch.Tensor, pre_sel: torch.Tensor
) -> torch.Tensor:
    """`pre_sel`, the pre-activations of latents `idx` [B, k] (computed without grad), made differentiable in
    W_enc and b_enc through `_SelectedPre`'s sparse backward."""
    return _SelectedPre.apply(W_enc, b_enc, x, idx, pre_sel)


class Transcoder(torch.nn.Module):
    """One layer's TopK transcoder in normalised units (x/sx -> y/sy)."""

    def __init__(self, d: int, width: int, k: int, skip: bool = True):
        super().__init__()
        self.k = k
        self.W_enc = torch.nn.Parameter(torch.zeros(width, d))
        self.b_enc = torch.nn.Parameter(torch.zeros(width))
        self.W_dec = torch.nn.Parameter(torch.zeros(width, d))
        self.b_dec = torch.nn.Parameter(torch.zeros(d))
        self.W_skip = torch.nn.Parameter(torch.zeros(d, d)) if skip else None

    @property
    def mm_dtype(self) -> torch.dtype:
        """The encoder's [batch, width] product, the one big matmul of a step: bf16 only where it is fast."""
        return compute_dtype(self.W_enc.device.type)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(indices [B,k], values [B,k] with grad, dense pre-activations without grad)."""
        with torch.no_grad():
            dt = self.mm_dtype
            pre = torch.addmm(self.b_enc.to(dt), x.to(dt), self.W_enc.to(dt).T)
            top, idx = pre.topk(self.k, dim=1, sorted=False)
        vals = F.relu(selected_pre(self.W_enc, self.b_enc, x, idx, top.float()))
        return idx, vals, pre

    def decode(self, idx: torch.Tensor, vals: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = F.embedding_bag(idx, self.W_dec, per_sample_weights=vals.float(), mode="sum") + self.b_dec
        if self.W_skip is not None:
            out = out + x @ self.W_skip.T
        return out

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))


# ---------------------------------------------------------------------------------------------- initialisation


def lsq_affine(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares (W [d_out, d_in], b) of y ≈ x @ W.T + b, ridge-regularised a little for stability."""
    x1 = torch.cat([x, torch.ones(len(x), 1)], dim=1).double()
    A = x1.T @ x1
    A += 1e-4 * A.diagonal().mean() * torch.eye(len(A), dtype=A.dtype)
    beta = torch.linalg.solve(A, x1.T @ y.double())
    return beta[:-1].T.float().contiguous(), beta[-1].float()


def init_transcoder(tc: Transcoder, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> None:
    """x, y: fp32 sample in normalised units (rms 1 per entry, so |x| ≈ sqrt(d)). Unit-norm encoder rows give
    pre-activations of cos·|x|, on the scale the unit-norm decoder rows need, where Adam's steps are a few %."""
    width, d = tc.W_enc.shape
    with torch.no_grad():
        if tc.W_skip is not None and cfg.lsq_skip_init:
            W, b = lsq_affine(x[:32_768], y[:32_768])  # 50 rows per unknown: as good as all, half the time
            tc.W_skip.copy_(W)
            tc.b_dec.copy_(b)
            resid = y - x @ W.T - b
        else:
            tc.b_dec.copy_(y.mean(0))
            resid = y - y.mean(0)
        if cfg.init == "data":
            # each latent starts as "inputs like x_j -> the part of y_j the linear map misses"
            rows = torch.randint(0, len(x), (width,), generator=gen)
            xc = x[rows] - x.mean(0)
            tc.W_enc.copy_(xc / xc.norm(dim=1, keepdim=True).clamp_min(1e-6))
            tc.W_dec.copy_(resid[rows])
        else:
            tc.W_dec.copy_(torch.randn(width, d, generator=gen))
            tc.W_enc.copy_(tc.W_dec / tc.W_dec.norm(dim=1, keepdim=True))
        tc.normalise_decoder()
        # scale the encoder so the latents' first guess is the least-squares multiple of what they should
        # add: without this the 32 fresh latents swamp the skip's answer and the first few hundred steps
        # (all a CPU budget has) go into undoing that
        idx, vals, _ = tc.encode(x[:8192])
        add = F.embedding_bag(idx, tc.W_dec, per_sample_weights=vals.float(), mode="sum")
        alpha = float((add * resid[:8192]).sum() / add.pow(2).sum().clamp_min(1e-12))
        alpha = min(max(alpha, 1e-2), 1.0)
        tc.W_enc.mul_(alpha)
        tc.b_enc.mul_(alpha)


# ---------------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(tc: Transcoder, x: torch.Tensor, y: torch.Tensor, sx: float, sy: float, chunk: int = 4096) -> dict:
    """Explained variance, L0 and dead fraction on held-out rows (raw bf16 activations). The sums stay on the
    device (each chunk's float32 sum added in float64, as Python floats did) and are read once at the end."""
    width, dev = tc.W_enc.shape[0], tc.W_enc.device
    fired = torch.zeros(width, dtype=torch.bool, device=dev)
    sums = torch.zeros(3, dtype=torch.float64, device=dev)  # sse, sst, sse of the skip alone
    l0 = torch.zeros((), dtype=torch.int64, device=dev)
    mean = (y.float().mean(0) / sy).to(dev)
    for i in range(0, len(x), chunk):
        xb, yb = to_device(x[i : i + chunk], dev).float() / sx, to_device(y[i : i + chunk], dev).float() / sy
        idx, vals, _ = tc.encode(xb)
        yh = tc.decode(idx, vals, xb)
        sums[0] += (yb - yh).pow(2).sum().double()
        sums[1] += (yb - mean).pow(2).sum().double()
        if tc.W_skip is not None:
            sums[2] += (yb - xb @ tc.W_skip.T - tc.b_dec).pow(2).sum().double()
        act = vals > 0
        fired |= fired_latents(idx, act, width)
        l0 += act.sum()
    sse, sst, sse_skip = sums.tolist()
    out = {
        "explained_variance": 1 - sse / sst,
        "l0": int(l0) / len(x),
        "dead_fraction": 1 - fired.float().mean().item(),
    }
    if tc.W_skip is not None:
        out["explained_variance_skip_only"] = 1 - sse_skip / sst
    return out
