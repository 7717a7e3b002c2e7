"""Training one layer's transcoder on cached rows: x = `mlp.hook_in`, y = `mlp.hook_out` (raw bf16).

TopK only (a JumpReLU layer trains as a CLT of one layer, `clt_train.train_jumprelu_layer`). x and y are scaled
by one scalar each (their rms) while training. Each step: Adam on the normalised reconstruction error (plus
AuxK when enabled), decoder rows renormalised;
dead latents (no firing for `dead_window` tokens) get an encoder-bias nudge every step before the decay phase
and are re-initialised at the `resample_at` fractions of the run. A checkpoint lets an interrupted layer resume.

GPU readiness (issue 16): a step (`train_step`) never reads a tensor back to the host. The rows live on the
device, the epoch's permutation is copied there once per epoch, the firing bookkeeping and the dead-latent nudge
are masked device ops (AuxK's top-k too, off the CPU), and the batch EV goes to the progress bar as a tensor.
Host reads happen only at the resampling steps (a few per run) and at checkpoints.
tests/training/test_training_device_residency.py runs steps on the `meta` device, where any such read raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from circuitboard.training.config import TrainConfig
from circuitboard.training.residency import fired_latents, nudge_dead
from circuitboard.training.transcoder import Transcoder, init_transcoder, selected_pre

SKIP_LR_SCALE = 0.05


@dataclass
class _Loop:
    """What one layer's steps carry from step to step (all of it checkpointed)."""

    tc: Transcoder
    opt: torch.optim.Optimizer
    gen: torch.Generator
    since_fired: torch.Tensor  # [width] tokens since each latent last fired
    sx: float
    sy: float
    cfg: TrainConfig
    total_steps: int

    @property
    def boost_until(self) -> int:
        return int(self.total_steps * (1 - self.cfg.decay_frac))

    def save(self, path: Path, step: int) -> None:
        tmp = path.with_suffix(".tmp")
        torch.save(
            {
                "model": self.tc.state_dict(),
                "opt": self.opt.state_dict(),
                "step": step,
                "sx": self.sx,
                "sy": self.sy,
                "gen": self.gen.get_state(),
                "since_fired": self.since_fired,
            },
            tmp,
        )
        tmp.replace(path)


def train_layer(
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    *,
    ckpt_path: Path | None = None,
    ckpt_every_s: float = 60.0,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[Transcoder, float, float]:
    """Train one layer on raw bf16 rows x, y [n, d]. Returns (transcoder in normalised units, sx, sy).

    Resumes from `ckpt_path` when it exists; writes it every `ckpt_every_s` seconds. `on_step(tokens,
    batch_ev)` feeds the progress bar (the EV a 0-dim tensor on the device: the bar reads it when it redraws).
    `should_stop()` (tests) interrupts after a checkpoint, raising KeyboardInterrupt as a real interruption
    would. Initialisation runs on the CPU; the steps run on `device` (a GPU holds the whole bf16 train split, a
    few hundred MB)."""
    device = torch.device(device)
    n = x.shape[0]
    loop, start_step = _start(x, y, cfg, ckpt_path, device)
    x, y = x.to(device), y.to(device)
    # dead latents are re-initialised early on (AuxK alone leaves a fifth of them dead in early layers)
    resample_at = {int(loop.total_steps * f) for f in cfg.resample_at}
    # drawn on the CPU (the generator, checkpointed, lives there), copied to the device once per epoch
    perm = torch.randperm(n, generator=loop.gen).to(device)
    pos = (start_step * cfg.batch_size) % n
    last_ckpt = time.monotonic()
    for step in range(start_step, loop.total_steps):
        if pos + cfg.batch_size > n:
            perm, pos = torch.randperm(n, generator=loop.gen).to(device), 0
        bi = perm[pos : pos + cfg.batch_size]
        pos += cfg.batch_size
        mse = train_step(loop, x[bi], y[bi], step, step in resample_at, x, y)
        if on_step is not None:
            on_step(len(bi), 1 - mse)
        stop = should_stop is not None and should_stop()
        if ckpt_path is not None and (stop or time.monotonic() - last_ckpt > ckpt_every_s):
            loop.save(ckpt_path, step + 1)
            last_ckpt = time.monotonic()
        if stop:
            raise KeyboardInterrupt
    return loop.tc, loop.sx, loop.sy


def _start(
    x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, ckpt_path: Path | None, device: torch.device
) -> tuple[_Loop, int]:
    """The loop state at step 0 (transcoder initialised from a sample of the rows, on the CPU) or at the
    checkpoint's step, and that step."""
    n, d = x.shape
    gen = torch.Generator().manual_seed(cfg.seed)
    sample = torch.randperm(n, generator=gen)[: min(n, 65_536)]
    xs, ys = x[sample].float(), y[sample].float()
    # one scalar per side: rms over all entries (position 0, with its outsized norms, is already excluded)
    sx, sy = xs.pow(2).mean().sqrt().item(), ys.pow(2).mean().sqrt().item()
    tc = Transcoder(d, cfg.width, cfg.k, cfg.skip)
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
    opt = _optimizer(tc, cfg)
    since_fired = torch.zeros(cfg.width, dtype=torch.long, device=device)
    if state is not None:
        opt.load_state_dict(state["opt"])  # moves the moments to the parameters' device
        since_fired = state["since_fired"].to(device)
    total_steps = max(1, cfg.steps_tokens // cfg.batch_size)
    return _Loop(tc, opt, gen, since_fired, sx, sy, cfg, total_steps), start_step


def _optimizer(tc: Transcoder, cfg: TrainConfig) -> torch.optim.Adam:
    # the skip starts at its least-squares optimum: Adam's fixed-size steps at the full rate would only add
    # noise to it (each step moves every one of its d² entries by ~lr), so it gets a small rate
    skip_lr = SKIP_LR_SCALE if cfg.lsq_skip_init else 1.0
    groups = [{"params": [p for name, p in tc.named_parameters() if name != "W_skip"], "lr_scale": 1.0}]
    if tc.W_skip is not None:
        groups.append({"params": [tc.W_skip], "lr_scale": skip_lr})
    return torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.999), fused=True)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_start = int(total * (1 - cfg.decay_frac))
    if step >= decay_start and cfg.decay_frac > 0:
        return cfg.lr * max(0.02, (total - step) / max(1, total - decay_start))
    return cfg.lr


def train_step(
    loop: _Loop, xb: torch.Tensor, yb: torch.Tensor, step: int, resample: bool, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """One step on a raw batch xb, yb [B, d] of the rows x, y: the optimiser step, then the dead latents' nudge
    (and at a resampling step their restart). Returns mse / variance as a 0-dim tensor on the device; nothing
    is read back to the host unless `resample` is on."""
    mse, dead = _step(loop, xb.float() / loop.sx, yb.float() / loop.sy, step)
    _revive(loop, dead, step, resample, x, y)
    return mse


def _step(loop: _Loop, xb: torch.Tensor, yb: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on a normalised batch: (mse / variance, detached, and the dead latents [width])."""
    cfg, tc = loop.cfg, loop.tc
    for g in loop.opt.param_groups:
        g["lr"] = lr_at(step, loop.total_steps, cfg) * g["lr_scale"]
    idx, vals, pre = tc.encode(xb)
    yh = tc.decode(idx, vals, xb)
    var = (yb - yb.mean(0)).pow(2).sum()
    mse = (yh - yb).pow(2).sum() / var
    loss = mse
    dead = _track_firing(loop, idx, vals, len(xb))
    if cfg.aux_coef > 0:
        aux = _aux_loss(tc, pre, xb, yb, yh, dead, cfg)
        if aux is not None:
            loss = loss + cfg.aux_coef * aux
    loop.opt.zero_grad(set_to_none=True)
    loss.backward()
    loop.opt.step()
    tc.normalise_decoder()
    return mse.detach(), dead


@torch.no_grad()
def _track_firing(loop: _Loop, idx: torch.Tensor, vals: torch.Tensor, batch: int) -> torch.Tensor:
    """Count tokens since each latent fired; the latents silent for longer than `dead_window` are dead."""
    loop.since_fired += batch
    loop.since_fired.masked_fill_(fired_latents(idx, vals > 0, loop.cfg.width), 0)
    return loop.since_fired > loop.cfg.dead_window


def _aux_loss(
    tc: Transcoder,
    pre: torch.Tensor,
    xb: torch.Tensor,
    yb: torch.Tensor,
    yh: torch.Tensor,
    dead: torch.Tensor,
    cfg: TrainConfig,
) -> torch.Tensor | None:
    """AuxK: the dead latents' top activations must explain the main reconstruction's error (None or a zero
    gradient when no latent is dead)."""
    nb = cfg.aux_batch or len(xb)  # the batch is already a random sample: its first rows are one too
    with torch.no_grad():
        picks = _dead_topk(pre[:nb], dead, cfg.aux_k)
    if picks is None:
        return None
    aidx, atop, real = picks
    avals = F.relu(selected_pre(tc.W_enc, tc.b_enc, xb[:nb], aidx, atop.float()))
    if real is not None:
        avals = avals * real
    err = (yb - yh).detach()[:nb]
    ehat = F.embedding_bag(aidx, tc.W_dec, per_sample_weights=avals.float(), mode="sum")
    aux = (ehat - err).pow(2).sum() / (err - err.mean(0)).pow(2).sum().clamp_min(1e-6)
    if real is not None:
        aux = aux * dead.any()
    return torch.nan_to_num(aux, nan=0.0)


def _dead_topk(
    pre: torch.Tensor, dead: torch.Tensor, k: int, compact: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
    """Each row's top k pre-activations among the dead latents: (latents, values, which picks are dead latents;
    None: all are), or None when none is dead. `compact` (default: on the CPU) gathers the dead columns."""
    if compact if compact is not None else pre.device.type == "cpu":
        # host reads cost nothing here: gathering the dead columns first costs O(batch·n_dead), where a masked
        # top-k over the whole width was most of the step time
        n_dead = int(dead.sum())
        if n_dead == 0:
            return None
        dead_ids = dead.nonzero().squeeze(1)
        atop, sel = pre.index_select(1, dead_ids).topk(min(k, n_dead), dim=1, sorted=False)
        return dead_ids[sel], atop, None
    # a device: a masked top-k of fixed size, no read of how many are dead; picks beyond them weigh nothing
    atop, aidx = pre.masked_fill(~dead, float("-inf")).topk(min(k, pre.shape[1]), dim=1, sorted=False)
    real = torch.isfinite(atop)
    return aidx, atop.masked_fill(~real, 0), real


def _revive(loop: _Loop, dead: torch.Tensor, step: int, resample: bool, x: torch.Tensor, y: torch.Tensor) -> None:
    """Dead latents: an encoder-bias nudge before the decay phase, and at the resampling steps a restart
    on badly reconstructed tokens."""
    cfg, tc = loop.cfg, loop.tc
    if cfg.dead_boost > 0 and step < loop.boost_until:
        nudge_dead(tc.b_enc, dead, cfg.dead_boost * lr_at(step, loop.total_steps, cfg))
    if not resample or not bool(dead.any()):  # a resampling step: a few per run may read the device
        return
    with torch.no_grad():  # a pool of fresh rows larger than the batch, for distinct targets
        pool = torch.randint(0, len(x), (8192,), generator=loop.gen).to(x.device)
        xp, yp = x[pool].float() / loop.sx, y[pool].float() / loop.sy
        idx, vals, _ = tc.encode(xp)
        ep = yp - tc.decode(idx, vals, xp)
    _resample(tc, loop.opt, dead, xp, ep, loop.gen, cfg.resample_scale)
    loop.since_fired.masked_fill_(dead, 0)


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
