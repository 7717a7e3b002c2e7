"""Per-layer transcoders trained on the activation cache (`circuitboard train-transcoders`).

Each layer: TopK (default) or JumpReLU latents with a linear skip, trained to map the MLP's normalised input
(`mlp.hook_in`) to the MLP block's output (`mlp.hook_out`). Recipe measured on the 2-core CPU in
shared/reference/transcoder-training.md, with two changes that buy EV per second:
  * the skip connection starts at the least-squares affine map x -> y (closed form, about a second), so the
    latents only learn what a linear map cannot, instead of first re-learning the linear part;
  * the encoder's backward touches only the k selected latents per token (a sparse index_add instead of a
    dense [batch, width] x [batch, d] product), which halves the step time at k=32, width 4096;
  * dead latents are revived by resampling and a bias nudge instead of an AuxK loss (see TrainConfig):
    about 30 ms a step instead of 90 at width 4096.
x and y are scaled by one scalar each while training; the scales are folded into the saved weights, which
therefore act on the model's raw activations. Output: circuit-tracer's PLT layout plus metrics.json.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save_file

from circuitboard.precision import compute_dtype, compute_dtype_name
from circuitboard.training.activations import load_rows, read_manifest


@dataclass(frozen=True)
class TrainConfig:
    width: int = 4096
    k: int = 32
    activation: str = "topk"  # topk | jumprelu
    skip: bool = True
    train_tokens: int = 204_800  # unique tokens in the activation cache's train split
    heldout_tokens: int = 25_600  # EV to ±0.002; with the train split, the atlas's 228k tokens
    steps_tokens: int = 332_800  # tokens seen per layer (650 steps, 1.6 passes over the cache)
    batch_size: int = 512
    lr: float = 1e-3
    warmup_steps: int = 50
    decay_frac: float = 0.3  # linear decay to 0 over the last part: a cheap, reliable EV gain
    # Dead latents (no firing for `dead_window` tokens) are revived two ways, both measured on layers 0/4/9/16
    # of Gemma 3 270M: re-initialised at `resample_at` on distinct badly reconstructed tokens at full encoder
    # scale, and their encoder bias nudged up by `dead_boost` × the current learning rate per step until they
    # fire (only before the decay phase). Dead fractions fell from 25-50% to 1-5% on held-out text, and it
    # replaces AuxK, which cost two thirds of the step time for a little less EV per second.
    dead_window: int = 10_000
    resample_at: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)
    resample_scale: float = 1.0  # resampled encoder rows' norm, as a fraction of the live rows' mean norm
    dead_boost: float = 10.0
    aux_coef: float = 0.0  # AuxK (Gao et al. 2024), off by default (see above)
    aux_k: int = 512
    aux_batch: int = 0  # rows of each batch the AuxK loss uses (0: all)
    init: str = "data"  # data: latents start at (input, residual) pairs from the data; random
    lsq_skip_init: bool = True
    seed: int = 0
    layers: tuple[int, ...] | None = None  # None: every layer


SKIP_LR_SCALE = 0.05

# tiny: CI's end-to-end check of the real pipeline (a few minutes); small: a quick look; default: the
# first-run setup target (≤ 25 min all-in on 2 cores); large: about an hour for higher EV.
BUDGETS: dict[str, TrainConfig] = {
    "tiny": TrainConfig(
        width=1024,
        k=16,
        train_tokens=12_800,
        heldout_tokens=3_840,
        steps_tokens=25_600,
        batch_size=256,
        lr=2e-3,
        dead_window=4_000,
        aux_k=128,
    ),
    "small": TrainConfig(train_tokens=102_400, heldout_tokens=25_600, steps_tokens=204_800),
    "default": TrainConfig(),
    "large": TrainConfig(width=8192, train_tokens=512_000, heldout_tokens=51_200, steps_tokens=1_228_800),
}


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
        if k * 8 > ctx.width or g.is_cuda:  # many selected (AuxK), or a GPU: the dense product is cheaper
            G = torch.zeros(B, ctx.width, dtype=torch.float32, device=g.device).scatter_add_(1, idx, g)
            return G.T @ x.float(), G.sum(0), None, None, None
        # a sparse [width, B] gradient matrix times x: ~15x faster than index_add of B·k rows on this CPU
        rows = torch.arange(B).repeat_interleave(k)
        S = torch.sparse_coo_tensor(
            torch.stack([idx.reshape(-1), rows]), g.reshape(-1), (ctx.width, B), check_invariants=False
        )
        gb = torch.zeros(ctx.width, dtype=torch.float32).index_add_(0, idx.reshape(-1), g.reshape(-1))
        return torch.sparse.mm(S, x.float()), gb, None, None, None


class _JumpReLU(torch.autograd.Function):
    """JumpReLU with a straight-through rectangle-kernel gradient for the threshold (Rajamanoharan et al.)."""

    @staticmethod
    def forward(ctx, pre, log_thr, bandwidth):
        thr = log_thr.exp()
        ctx.save_for_backward(pre, thr)
        ctx.bw = bandwidth
        return pre * (pre > thr)

    @staticmethod
    def backward(ctx, g):
        pre, thr = ctx.saved_tensors
        near = ((pre - thr).abs() < ctx.bw / 2).to(g.dtype)
        g_pre = g * (pre > thr)
        g_thr = -(thr / ctx.bw) * (g * near * pre).sum(0)  # d/dlog θ = θ d/dθ
        return g_pre, g_thr, None


class _Step(torch.autograd.Function):
    """Heaviside step with the same pseudo-derivative, for the L0 penalty."""

    @staticmethod
    def forward(ctx, pre, log_thr, bandwidth):
        thr = log_thr.exp()
        ctx.save_for_backward(pre, thr)
        ctx.bw = bandwidth
        return (pre > thr).to(pre.dtype)

    @staticmethod
    def backward(ctx, g):
        pre, thr = ctx.saved_tensors
        near = ((pre - thr).abs() < ctx.bw / 2).to(g.dtype)
        return None, -(thr / ctx.bw) * (g * near).sum(0), None


class Transcoder(torch.nn.Module):
    """One layer's transcoder in normalised units (x/sx -> y/sy)."""

    def __init__(self, d: int, width: int, k: int, activation: str = "topk", skip: bool = True):
        super().__init__()
        self.k, self.activation = k, activation
        self.W_enc = torch.nn.Parameter(torch.zeros(width, d))
        self.b_enc = torch.nn.Parameter(torch.zeros(width))
        self.W_dec = torch.nn.Parameter(torch.zeros(width, d))
        self.b_dec = torch.nn.Parameter(torch.zeros(d))
        self.W_skip = torch.nn.Parameter(torch.zeros(d, d)) if skip else None
        self.log_thr = torch.nn.Parameter(torch.full((width,), math.log(0.1))) if activation == "jumprelu" else None

    @property
    def mm_dtype(self) -> torch.dtype:
        """The encoder's [batch, width] product, the one big matmul of a step: bf16 only where it is fast."""
        return compute_dtype(self.W_enc.device.type)

    def encode(self, x: torch.Tensor):
        """(indices [B,k], values [B,k] with grad, dense pre-activations without grad) for TopK;
        (None, dense activations, None) for JumpReLU."""
        if self.activation == "jumprelu":
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.mm_dtype == torch.bfloat16):
                pre = F.linear(x, self.W_enc, self.b_enc)
            return None, _JumpReLU.apply(pre.float(), self.log_thr, 0.05), pre
        with torch.no_grad():
            dt = self.mm_dtype
            pre = torch.addmm(self.b_enc.to(dt), x.to(dt), self.W_enc.to(dt).T)
            top, idx = pre.topk(self.k, dim=1, sorted=False)
        vals = F.relu(_SelectedPre.apply(self.W_enc, self.b_enc, x, idx, top.float()))
        return idx, vals, pre

    def decode(self, idx, vals, x):
        if idx is None:
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.mm_dtype == torch.bfloat16):
                out = vals @ self.W_dec
            out = out.float() + self.b_dec
        else:
            out = F.embedding_bag(idx, self.W_dec, per_sample_weights=vals.float(), mode="sum") + self.b_dec
        if self.W_skip is not None:
            out = out + x @ self.W_skip.T
        return out

    @torch.no_grad()
    def normalise_decoder(self):
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))


# ---------------------------------------------------------------------------------------------- training


def _lsq_affine(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares (W [d_out, d_in], b) of y ≈ x @ W.T + b, ridge-regularised a little for stability."""
    x1 = torch.cat([x, torch.ones(len(x), 1)], dim=1).double()
    A = x1.T @ x1
    A += 1e-4 * A.diagonal().mean() * torch.eye(len(A), dtype=A.dtype)
    beta = torch.linalg.solve(A, x1.T @ y.double())
    return beta[:-1].T.float().contiguous(), beta[-1].float()


def init_transcoder(tc: Transcoder, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, gen: torch.Generator):
    """x, y: fp32 sample in normalised units (rms 1 per entry, so |x| ≈ sqrt(d)). Unit-norm encoder rows give
    pre-activations of cos·|x|, on the scale the unit-norm decoder rows need, where Adam's steps are a few %."""
    width, d = tc.W_enc.shape
    with torch.no_grad():
        if tc.W_skip is not None and cfg.lsq_skip_init:
            W, b = _lsq_affine(x[:32_768], y[:32_768])  # 50 rows per unknown: as good as all, half the time
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
        if tc.activation == "topk":
            # scale the encoder so the latents' first guess is the least-squares multiple of what they should
            # add: without this the 32 fresh latents swamp the skip's answer and the first few hundred steps
            # (all a CPU budget has) go into undoing that
            idx, vals, _ = tc.encode(x[:8192])
            add = F.embedding_bag(idx, tc.W_dec, per_sample_weights=vals.float(), mode="sum")
            alpha = float((add * resid[:8192]).sum() / add.pow(2).sum().clamp_min(1e-12))
            alpha = min(max(alpha, 1e-2), 1.0)
            tc.W_enc.mul_(alpha)
            tc.b_enc.mul_(alpha)
        if tc.log_thr is not None:
            # start thresholds at the (1 - k/width) quantile of pre-activations: about k active per token
            pre = x[:2048] @ tc.W_enc.T + tc.b_enc
            q = torch.quantile(pre.float(), 1 - cfg.k / width, dim=0).clamp_min(1e-3)
            tc.log_thr.copy_(q.log())


@torch.no_grad()
def evaluate(tc: Transcoder, x: torch.Tensor, y: torch.Tensor, sx: float, sy: float, chunk: int = 4096) -> dict:
    """Explained variance, L0 and dead fraction on held-out rows (raw bf16 activations)."""
    width, dev = tc.W_enc.shape[0], tc.W_enc.device
    fired = torch.zeros(width, dtype=torch.bool, device=dev)
    sse = sse_skip = l0 = 0.0
    mean = (y.float().mean(0) / sy).to(dev)
    sst = 0.0
    for i in range(0, len(x), chunk):
        xb, yb = x[i : i + chunk].to(dev).float() / sx, y[i : i + chunk].to(dev).float() / sy
        idx, vals, _ = tc.encode(xb)
        yh = tc.decode(idx, vals, xb)
        sse += (yb - yh).pow(2).sum().item()
        sst += (yb - mean).pow(2).sum().item()
        if tc.W_skip is not None:
            sse_skip += (yb - xb @ tc.W_skip.T - tc.b_dec).pow(2).sum().item()
        if idx is None:
            active = vals > 0
            fired |= active.any(0)
            l0 += active.sum().item()
        else:
            act = vals > 0
            fired[idx[act]] = True
            l0 += act.sum().item()
    out = {"explained_variance": 1 - sse / sst, "l0": l0 / len(x), "dead_fraction": 1 - fired.float().mean().item()}
    if tc.W_skip is not None:
        out["explained_variance_skip_only"] = 1 - sse_skip / sst
    return out


@torch.no_grad()
def _resample(
    tc: Transcoder,
    opt: torch.optim.Optimizer,
    dead: torch.Tensor,
    x: torch.Tensor,
    err: torch.Tensor,
    gen: torch.Generator,
    scale: float = 1.0,
) -> None:
    """Point dead latents at badly reconstructed tokens (distinct, chosen with probability ∝ squared error):
    encoder row = the token's input direction at `scale` × the live rows' mean norm (1.0: they compete for the
    top-k at once instead of waiting below it), decoder row = its error direction; their Adam state is reset."""
    ids = dead.nonzero().squeeze(1)
    # distinct tokens when the pool allows: copies of one input would compete and die together again
    w = (err.pow(2).sum(1) + 1e-12).cpu()  # drawn on the CPU: the generator lives there
    rows = torch.multinomial(w, len(ids), replacement=len(ids) > len(x), generator=gen).to(x.device)
    xc = x[rows] - x.mean(0)
    live = ~dead
    norm = tc.W_enc[live].norm(dim=1).mean() if live.any() else torch.tensor(1.0)
    tc.W_enc[ids] = xc / xc.norm(dim=1, keepdim=True).clamp_min(1e-6) * norm * scale
    tc.b_enc[ids] = tc.b_enc[live].mean() * scale if live.any() else 0.0
    tc.W_dec[ids] = err[rows] / err[rows].norm(dim=1, keepdim=True).clamp_min(1e-6)
    for p in (tc.W_enc, tc.b_enc, tc.W_dec):
        st = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in st:
                st[key][ids] = 0


def _lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_start = int(total * (1 - cfg.decay_frac))
    if step >= decay_start and cfg.decay_frac > 0:
        return cfg.lr * max(0.02, (total - step) / max(1, total - decay_start))
    return cfg.lr


def train_layer(
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    *,
    ckpt_path: Path | None = None,
    ckpt_every_s: float = 60.0,
    on_step: Callable[[int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[Transcoder, float, float]:
    """Train one layer on raw bf16 rows x, y [n, d]. Returns (transcoder in normalised units, sx, sy).

    Resumes from `ckpt_path` when it exists; writes it every `ckpt_every_s` seconds. `on_step(tokens,
    batch_ev)` feeds the progress bar. `should_stop()` (tests) interrupts after a checkpoint, raising
    KeyboardInterrupt as a real interruption would. Initialisation runs on the CPU; the steps run on `device`
    (a GPU holds the whole bf16 train split, a few hundred MB)."""
    device = torch.device(device)
    n, d = x.shape
    gen = torch.Generator().manual_seed(cfg.seed)
    sample = torch.randperm(n, generator=gen)[: min(n, 65_536)]
    xs, ys = x[sample].float(), y[sample].float()
    # one scalar per side: rms over all entries (position 0, with its outsized norms, is already excluded)
    sx, sy = xs.pow(2).mean().sqrt().item(), ys.pow(2).mean().sqrt().item()
    tc = Transcoder(d, cfg.width, cfg.k, cfg.activation, cfg.skip)
    total_steps = max(1, cfg.steps_tokens // cfg.batch_size)
    start_step = 0
    state = None
    if ckpt_path is not None and ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False, map_location="cpu")
        tc.load_state_dict(state["model"])
        sx, sy, start_step = state["sx"], state["sy"], state["step"]
        gen.set_state(state["gen"])
    else:
        init_transcoder(tc, xs / sx, ys / sy, cfg, gen)
    del xs, ys
    tc.to(device)
    x, y = x.to(device), y.to(device)
    # the skip starts at its least-squares optimum: Adam's fixed-size steps at the full rate would only add
    # noise to it (each step moves every one of its d² entries by ~lr), so it gets a small rate
    skip_lr = SKIP_LR_SCALE if cfg.lsq_skip_init else 1.0
    groups = [{"params": [p for n, p in tc.named_parameters() if n != "W_skip"], "lr_scale": 1.0}]
    if tc.W_skip is not None:
        groups.append({"params": [tc.W_skip], "lr_scale": skip_lr})
    opt = torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.999), fused=True)
    since_fired = torch.zeros(cfg.width, dtype=torch.long, device=device)
    if state is not None:
        opt.load_state_dict(state["opt"])  # moves the moments to the parameters' device
        since_fired = state["since_fired"].to(device)
    l0_coef = 1e-3
    # dead latents are re-initialised early on (AuxK alone leaves a fifth of them dead in early layers)
    resample_at = {int(total_steps * f) for f in cfg.resample_at}
    boost_until = int(total_steps * (1 - cfg.decay_frac))
    perm = torch.randperm(n, generator=gen)
    pos = (start_step * cfg.batch_size) % n
    last_ckpt = time.monotonic()

    def save_ckpt(step: int):
        if ckpt_path is None:
            return
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(
            {
                "model": tc.state_dict(),
                "opt": opt.state_dict(),
                "step": step,
                "sx": sx,
                "sy": sy,
                "gen": gen.get_state(),
                "since_fired": since_fired,
            },
            tmp,
        )
        tmp.replace(ckpt_path)

    for step in range(start_step, total_steps):
        if pos + cfg.batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        bi = perm[pos : pos + cfg.batch_size].to(device)
        pos += cfg.batch_size
        xb, yb = x[bi].float() / sx, y[bi].float() / sy
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, total_steps, cfg) * g["lr_scale"]

        idx, vals, pre = tc.encode(xb)
        yh = tc.decode(idx, vals, xb)
        var = (yb - yb.mean(0)).pow(2).sum()
        mse = (yh - yb).pow(2).sum() / var
        loss = mse
        with torch.no_grad():
            if idx is None:
                fired = (vals > 0).any(0)
            else:
                fired = torch.zeros(cfg.width, dtype=torch.bool, device=device)
                fired[idx[vals > 0]] = True
            since_fired += len(bi)
            since_fired[fired] = 0
        dead = since_fired > cfg.dead_window
        n_dead = int(dead.sum())
        if idx is not None and n_dead > 0 and cfg.aux_coef > 0:
            # AuxK: the dead latents' top activations must explain the main reconstruction's error
            k_aux = min(cfg.aux_k, n_dead)
            nb = cfg.aux_batch or len(bi)  # the batch is already a random sample: its first rows are one too
            with torch.no_grad():
                # top-k among the dead columns only: gathering them first costs O(batch·n_dead), where a
                # masked top-k over the whole width was most of the step time
                dead_ids = dead.nonzero().squeeze(1)
                atop, sel = pre[:nb].index_select(1, dead_ids).topk(k_aux, dim=1, sorted=False)
                aidx = dead_ids[sel]
            avals = F.relu(_SelectedPre.apply(tc.W_enc, tc.b_enc, xb[:nb], aidx, atop.float()))
            err = (yb - yh).detach()[:nb]
            ehat = F.embedding_bag(aidx, tc.W_dec, per_sample_weights=avals.float(), mode="sum")
            aux = (ehat - err).pow(2).sum() / (err - err.mean(0)).pow(2).sum().clamp_min(1e-6)
            loss = loss + cfg.aux_coef * torch.nan_to_num(aux, nan=0.0)
        if idx is None:
            # JumpReLU: an L0 penalty whose weight is steered so that L0 settles near k
            l0 = _Step.apply(pre.float(), tc.log_thr, 0.05).sum(1).mean()
            loss = loss + l0_coef * l0
            l0_coef *= math.exp(0.01 * (l0.item() / cfg.k - 1))

        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        tc.normalise_decoder()
        if idx is not None and cfg.dead_boost > 0 and n_dead > 0 and step < boost_until:
            with torch.no_grad():
                tc.b_enc[dead] += cfg.dead_boost * _lr_at(step, total_steps, cfg)
        if idx is not None and step in resample_at and n_dead > 0:
            with torch.no_grad():  # a pool of fresh rows larger than the batch, for distinct targets
                pool = torch.randint(0, n, (8192,), generator=gen).to(device)
                xp, yp = x[pool].float() / sx, y[pool].float() / sy
                ep = yp - tc.decode(*tc.encode(xp)[:2], xp)
            _resample(tc, opt, dead, xp, ep, gen, cfg.resample_scale)
            since_fired[dead] = 0
        if on_step is not None:
            on_step(len(bi), 1 - mse.item())
        stop = should_stop is not None and should_stop()
        if ckpt_path is not None and (stop or time.monotonic() - last_ckpt > ckpt_every_s):
            save_ckpt(step + 1)
            last_ckpt = time.monotonic()
        if stop:
            raise KeyboardInterrupt
    return tc, sx, sy


# ---------------------------------------------------------------------------------------------- saving


def export_tensors(tc: Transcoder, sx: float, sy: float) -> dict[str, torch.Tensor]:
    """circuit-tracer PLT tensors acting on raw activations: fold x/sx and y*sy into the weights."""
    t = {
        "W_enc": (tc.W_enc.detach().cpu() / sx).contiguous(),
        "b_enc": tc.b_enc.detach().cpu().clone(),
        "W_dec": (tc.W_dec.detach().cpu() * sy).contiguous(),
        "b_dec": (tc.b_dec.detach().cpu() * sy).contiguous(),
    }
    if tc.W_skip is not None:
        t["W_skip"] = (tc.W_skip.detach().cpu() * (sy / sx)).contiguous()
    if tc.activation == "jumprelu":
        t["activation_function.threshold"] = tc.log_thr.detach().cpu().exp().contiguous()
    else:
        t["k"] = torch.tensor(tc.k, dtype=torch.int64)
    return {k: v.float() if v.is_floating_point() else v for k, v in t.items()}


def write_config(out_dir: Path, n_layers: int, cfg: TrainConfig, model_name: str, budget: str | None) -> None:
    conf = {
        "model_kind": "transcoder_set",
        "model_name": model_name,
        "feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "mlp.hook_out",
        "transcoders": [f"layer_{i}.safetensors" for i in range(n_layers)],
        "activation": cfg.activation,
    }
    if cfg.activation == "topk":
        conf["k"] = cfg.k
    conf["training"] = {"budget": budget, **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}}
    (out_dir / "config.yaml").write_text(yaml.safe_dump(conf, sort_keys=False))


def train_transcoders(
    cache_dir: Path,
    out_dir: Path,
    cfg: TrainConfig,
    *,
    model_name: str = "",
    budget: str | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    should_stop: Callable[[], bool] | None = None,
    device: str | torch.device = "cpu",
) -> dict:
    """Train every layer of the cache into `out_dir` (PLT layout). Work in progress lives in
    `<out_dir>.partial/` (finished layers, the current layer's checkpoint, metrics so far); `resume=True`
    continues from there; the folder is renamed to `out_dir` only when every layer is done."""
    device = torch.device(device)
    m = read_manifest(cache_dir)
    if m is None or m["complete_seqs"] < m["n_seqs"]:
        raise RuntimeError(f"activation cache {cache_dir} is missing or incomplete; build it first")
    layers = list(cfg.layers) if cfg.layers is not None else list(m["layers"])
    n_layers_model = max(m["layers"]) + 1
    T = m["seq_len"]
    tr0, tr1 = m["split"]["train"]
    ho0, ho1 = m["split"]["heldout"]
    n_train_seqs = min(tr1 - tr0, math.ceil(cfg.train_tokens / T))
    n_held_seqs = min(ho1 - ho0, math.ceil(cfg.heldout_tokens / T))
    out_dir = Path(out_dir)
    partial = out_dir.with_name(out_dir.name + ".partial")
    if partial.exists() and not resume:
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    metrics_path = partial / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    metrics.update(
        {
            "budget": budget,
            "device": device.type,
            "compute_dtype": compute_dtype_name(device.type),
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
            "cache": {
                "dir": str(cache_dir),
                "train_tokens": n_train_seqs * (T - 1),
                "heldout_tokens": n_held_seqs * (T - 1),
            },
        }
    )
    metrics.setdefault("layers", {})
    todo = [l for l in layers if not (partial / f"layer_{l}.safetensors").exists()]
    bar = None
    if progress:
        from tqdm import tqdm

        done_tokens = (len(layers) - len(todo)) * cfg.steps_tokens
        bar = tqdm(
            total=len(layers) * cfg.steps_tokens,
            initial=done_tokens,
            unit="tok",
            unit_scale=True,
            desc="transcoders",
            dynamic_ncols=True,
            smoothing=0.05,
        )
    ev_ema = [None]
    t_all = time.perf_counter()
    try:
        for layer in todo:
            t0 = time.perf_counter()
            x = load_rows(cache_dir, layer, "in", (tr0, tr0 + n_train_seqs), m)
            y = load_rows(cache_dir, layer, "out", (tr0, tr0 + n_train_seqs), m)
            ckpt = partial / f"layer_{layer}.ckpt.pt"
            if bar is not None and ckpt.exists():
                bar.update(int(torch.load(ckpt, weights_only=False)["step"]) * cfg.batch_size)

            def on_step(nt: int, ev: float, layer=layer):
                ev_ema[0] = ev if ev_ema[0] is None else 0.98 * ev_ema[0] + 0.02 * ev
                if bar is not None:
                    bar.update(nt)
                    bar.set_postfix_str(f"layer {layer} EV {ev_ema[0]:.3f}", refresh=False)

            ev_ema[0] = None
            tc, sx, sy = train_layer(x, y, cfg, ckpt_path=ckpt, on_step=on_step, should_stop=should_stop, device=device)
            del x, y
            xh = load_rows(cache_dir, layer, "in", (ho0, ho0 + n_held_seqs), m)
            yh = load_rows(cache_dir, layer, "out", (ho0, ho0 + n_held_seqs), m)
            res = evaluate(tc, xh, yh, sx, sy)
            res["seconds"] = round(time.perf_counter() - t0, 1)
            res["scales"] = {"x": sx, "y": sy}
            save_file(export_tensors(tc, sx, sy), str(partial / f"layer_{layer}.safetensors"))
            metrics["layers"][str(layer)] = res
            metrics_path.write_text(json.dumps(metrics, indent=2))
            ckpt.unlink(missing_ok=True)
            msg = (
                f"layer {layer}: EV {res['explained_variance']:.3f} (skip alone "
                f"{res.get('explained_variance_skip_only', float('nan')):.3f}), L0 {res['l0']:.1f}, "
                f"dead {100 * res['dead_fraction']:.1f}%, {res['seconds']} s"
            )
            (bar.write if bar is not None else log)(msg)
    finally:
        if bar is not None:
            bar.close()
    evs = [metrics["layers"][str(l)]["explained_variance"] for l in layers]
    metrics["summary"] = {
        "mean_explained_variance": sum(evs) / len(evs),
        "min_explained_variance": min(evs),
        "max_l0": max(metrics["layers"][str(l)]["l0"] for l in layers),
        "max_dead_fraction": max(metrics["layers"][str(l)]["dead_fraction"] for l in layers),
        "mean_dead_fraction": sum(metrics["layers"][str(l)]["dead_fraction"] for l in layers) / len(layers),
        "train_seconds_this_run": round(time.perf_counter() - t_all, 1),
    }
    metrics_path.write_text(json.dumps(metrics, indent=2))
    if set(layers) == set(range(n_layers_model)):
        write_config(partial, n_layers_model, cfg, model_name, budget)
        shutil.rmtree(out_dir, ignore_errors=True)
        partial.rename(out_dir)
        final = out_dir
    else:  # a subset of layers is an experiment, not a usable set: leave it in .partial
        final = partial
    s = metrics["summary"]
    log(
        f"transcoders -> {final}: mean EV {s['mean_explained_variance']:.3f} (min "
        f"{s['min_explained_variance']:.3f}), max L0 {s['max_l0']:.1f}, max dead {100 * s['max_dead_fraction']:.1f}%"
    )
    return metrics


def config_for(budget: str = "default", **overrides) -> TrainConfig:
    cfg = BUDGETS[budget]
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
