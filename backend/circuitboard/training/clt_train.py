"""Cross-layer transcoder training on the activation cache (`circuitboard train-transcoders --kind clt`), and
the same steps for one layer's JumpReLU transcoder (a CLT of one layer: `train_jumprelu_layer`).

All layers train jointly: a batch holds the same tokens' MLP inputs and outputs at every layer, read from a
random chunk of the train split's sequences (`_Chunks`: every layer of `chunk_tokens` tokens in memory, not the
whole split). Each step: Adam on the normalised reconstruction error summed over layers, plus for JumpReLU the
tanh sparsity penalty (its weight steered so that the mean L0 per layer settles near k); TopK decoders are
renormalised. Dead features (silent for `dead_window` tokens) get an encoder-bias nudge before the decay phase
and are re-initialised at the `resample_at` fractions of the run, as in the per-layer TopK trainer. A checkpoint
every `ckpt_every_s` lets an interrupted run resume at its step; batches are a function of the step, so a
resumed run sees the batches the uninterrupted one would have.

GPU readiness (issue 16): a step (`train_step`) reads nothing back to the host but what JumpReLU's selection
needs (`CrossLayerTranscoder.encode`: which pre-activations pass their thresholds, a data-dependent count, one
read per layer; TopK selects a fixed k and reads nothing). A chunk of the cache is copied to the device once
(pinned, non-blocking) and batches are gathered there; the firing bookkeeping, the dead-feature nudge and the
sparsity weight's steering are device ops; the batch EV goes to the progress bar as a tensor. The resampling
steps (a few per run) and the checkpoints read the device. tests/training/test_training_device_residency.py
runs steps on the `meta` device, where any other read raises.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from circuitboard.data.activations import load_sequences, to_device
from circuitboard.engine.transcoder_files import write_layer
from circuitboard.training.clt import Codes, CrossLayerTranscoder, evaluate_clt, init_clt, sparsity_penalty
from circuitboard.training.config import TrainConfig
from circuitboard.training.export import export_clt
from circuitboard.training.layer import SKIP_LR_SCALE, lr_at
from circuitboard.training.residency import fired_latents, nudge_dead
from circuitboard.training.run import (
    Progress,
    Splits,
    checkpoint_step,
    complete_manifest,
    partial_dir,
    publish,
    start_metrics,
    summary,
    summary_line,
)

CKPT = "clt.ckpt.pt"


class _Batches(Protocol):
    def first(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[L, n, d] rows of every layer to initialise from (raw, bf16)."""
        ...

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """[L, B, d] rows of every layer for `step` (raw, bf16): a function of the step."""
        ...


class _Rows:
    """Batches of one layer's rows [n, d] (a JumpReLU PLT layer), held on the device (a GPU holds the whole bf16
    train split, a few hundred MB): a fresh permutation each epoch, copied there once per epoch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, device: torch.device):
        self.x, self.y, self.cfg = x, y, cfg  # on the CPU, for the initialisation
        self.xd, self.yd = x.to(device), y.to(device)
        self.per_epoch = max(1, len(x) // cfg.batch_size)
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def first(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[None], self.y[None]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, b = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.cfg.seed * 7919 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(len(self.x), generator=gen).to(self.xd.device)
        idx = self._perm[b * self.cfg.batch_size : (b + 1) * self.cfg.batch_size]
        return self.xd[idx][None], self.yd[idx][None]


class _Chunks:
    """Batches [L, B, d] of every layer's (x, y), bf16, from chunks of random train sequences: read on the CPU,
    each training chunk copied to `device` once and its batches gathered there."""

    def __init__(
        self, cache_dir: Path, m: dict, train: tuple[int, int], cfg: TrainConfig, device: torch.device | None = None
    ):
        self.cache_dir, self.m, self.cfg = cache_dir, m, cfg
        self.device = device or torch.device("cpu")
        self.seq0, self.n_seqs = train[0], train[1] - train[0]
        self.per_seq = m["seq_len"] - 1
        self.seqs = max(1, min(self.n_seqs, cfg.chunk_tokens // self.per_seq))
        self.per_chunk = max(1, self.seqs * self.per_seq // cfg.batch_size)  # batches
        self.per_epoch = max(1, self.n_seqs // self.seqs)  # chunks
        self._c = -1
        self._xy: tuple[torch.Tensor, torch.Tensor] | None = None
        self._order = torch.empty(0, dtype=torch.long)

    def sequences(self, c: int) -> np.ndarray:
        epoch, j = divmod(c, self.per_epoch)
        perm = torch.randperm(self.n_seqs, generator=torch.Generator().manual_seed(self.cfg.seed * 7919 + epoch))
        return np.sort(perm[j * self.seqs : (j + 1) * self.seqs].numpy()) + self.seq0

    def load(self, seq_ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        layers = range(len(self.m["layers"]))
        x = torch.stack([load_sequences(self.cache_dir, layer, "in", seq_ids, self.m) for layer in layers])
        y = torch.stack([load_sequences(self.cache_dir, layer, "out", seq_ids, self.m) for layer in layers])
        return x, y

    def first(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.load(self.sequences(0))

    def chunks(self, seqs: tuple[int, int]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every layer of sequences [s0, s1) (the held-out split), a chunk at a time."""
        for s0 in range(seqs[0], seqs[1], self.seqs):
            yield self.load(np.arange(s0, min(s0 + self.seqs, seqs[1])))

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        c, b = divmod(step, self.per_chunk)
        if c != self._c:
            self._xy = None  # the previous chunk's device memory is free before the next one arrives
            x, y = self.load(self.sequences(c))
            self._xy = to_device(x, self.device), to_device(y, self.device)
            order = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(self.cfg.seed * 104_729 + c))
            self._order, self._c = order.to(self.device), c
        assert self._xy is not None
        idx = self._order[b * self.cfg.batch_size : (b + 1) * self.cfg.batch_size]
        return self._xy[0][:, idx], self._xy[1][:, idx]


@dataclass
class _Loop:
    """What the steps carry from one to the next (all of it checkpointed)."""

    tc: CrossLayerTranscoder
    opt: torch.optim.Optimizer
    gen: torch.Generator
    since_fired: torch.Tensor  # [L, width] tokens since each feature last fired
    sx: torch.Tensor  # [L] rms of each layer's MLP input
    sy: torch.Tensor  # [L] ... and output
    cfg: TrainConfig
    total_steps: int
    # JumpReLU: the sparsity penalty's weight (float64, on the device), steered so that L0 settles near k
    l0_coef: torch.Tensor = field(default_factory=lambda: torch.tensor(1e-4, dtype=torch.float64))
    seconds: float = 0.0  # training time of the earlier runs this one resumes

    def save(self, path: Path, step: int, seconds: float) -> None:
        tmp = path.with_suffix(".tmp")
        state = {
            "model": self.tc.state_dict(),
            "opt": self.opt.state_dict(),
            "step": step,
            "sx": self.sx,
            "sy": self.sy,
            "gen": self.gen.get_state(),
            "since_fired": self.since_fired,
            "l0_coef": float(self.l0_coef),
            "seconds": seconds,
        }
        torch.save(state, tmp)
        tmp.replace(path)


def train_clt(
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
    ckpt_every_s: float = 120.0,
) -> dict:
    """Train one CLT over every layer of the cache into `out_dir` (circuit-tracer's CLT layout); the work in
    progress (checkpoint, metrics) lives in `<out_dir>.partial/` and `resume=True` continues from there."""
    device = torch.device(device)
    m = complete_manifest(cache_dir)
    layers = list(range(len(m["layers"])))
    if m["layers"] != layers or cfg.layers is not None:
        raise ValueError(f"a CLT trains every layer jointly: no --layers, and a cache of every layer ({m['layers']})")
    splits = Splits.of(m, cfg)
    partial = partial_dir(Path(out_dir), resume)
    metrics = start_metrics(partial / "metrics.json", cfg, budget, device, cache_dir, splits)
    data = _Chunks(Path(cache_dir), m, splits.train, cfg, device)
    ckpt = partial / CKPT
    loop, start = _start(data, cfg, ckpt, device)
    bar = Progress(progress, cfg.steps_tokens, 0, desc="clt")
    bar.start("all layers", checkpoint_step(ckpt) * cfg.batch_size)
    t0 = time.perf_counter()
    try:
        _run(loop, data, start, ckpt, bar.on_step, should_stop, ckpt_every_s, device)
    finally:
        bar.close()
    if cfg.jumprelu_export and loop.tc.log_thr is None:
        x, _ = data.first()
        loop.tc.to_jumprelu(x.to(device).float() / loop.sx.to(device)[:, None, None])
    seconds = loop.seconds + time.perf_counter() - t0
    for layer, res in enumerate(evaluate_clt(loop.tc, data.chunks(splits.heldout), loop.sx, loop.sy)):
        metrics["layers"][str(layer)] = res
        bar.write(f"layer {layer}: EV {res['explained_variance']:.3f}, L0 {res['l0']:.1f}, "
                  f"dead {100 * res['dead_fraction']:.1f}%", log)  # fmt: skip
    for layer, tensors in enumerate(export_clt(loop.tc, loop.sx, loop.sy)):
        write_layer(partial, layer, tensors, cross_layer=True)
    metrics["summary"] = {**summary(metrics, layers, seconds), "train_seconds": round(seconds, 1)}
    (partial / "metrics.json").write_text(json.dumps(metrics, indent=2))
    ckpt.unlink(missing_ok=True)
    final = publish(partial, Path(out_dir), layers, len(layers), cfg, model_name, budget)
    log(summary_line(final, metrics["summary"]))
    return metrics


def train_jumprelu_layer(
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    *,
    ckpt_path: Path,
    on_step: Callable[[int, torch.Tensor], None],
    should_stop: Callable[[], bool] | None = None,
    device: str | torch.device = "cpu",
    ckpt_every_s: float = 60.0,
) -> tuple[CrossLayerTranscoder, torch.Tensor, torch.Tensor]:
    """One layer's JumpReLU transcoder on raw bf16 rows x, y [n, d]: (a one-layer CLT in normalised units, sx [1],
    sy [1]). Resumes from `ckpt_path` when it exists."""
    device = torch.device(device)
    rows = _Rows(x, y, cfg, device)
    loop, start = _start(rows, cfg, ckpt_path, device)
    _run(loop, rows, start, ckpt_path, on_step, should_stop, ckpt_every_s, device)
    return loop.tc, loop.sx, loop.sy


def _start(data: _Batches, cfg: TrainConfig, ckpt: Path, device: torch.device) -> tuple[_Loop, int]:
    """The loop at step 0 (initialised from the first rows, on the CPU) or at the checkpoint's step."""
    x, y = data.first()
    L, _, d = x.shape
    gen = torch.Generator().manual_seed(cfg.seed)
    sample = torch.randperm(x.shape[1], generator=gen)[:32_768]
    xs, ys = x[:, sample].float(), y[:, sample].float()
    sx, sy = xs.pow(2).mean((1, 2)).sqrt(), ys.pow(2).mean((1, 2)).sqrt()  # one scalar per layer and side
    tc = CrossLayerTranscoder(L, d, cfg.width, cfg.k, cfg.activation, cfg.skip)
    state = torch.load(ckpt, weights_only=False, map_location="cpu") if ckpt.exists() else None
    if state is not None:
        tc.load_state_dict(state["model"])
        sx, sy = state["sx"], state["sy"]
        gen.set_state(state["gen"])
    else:
        init_clt(tc, xs / sx[:, None, None], ys / sy[:, None, None], cfg, gen)
    del x, y, xs, ys
    tc.to(device)
    opt = _optimizer(tc, cfg)
    total = max(1, cfg.steps_tokens // cfg.batch_size)
    loop = _Loop(tc, opt, gen, torch.zeros(L, cfg.width, dtype=torch.long, device=device), sx, sy, cfg, total)
    if state is not None:
        opt.load_state_dict(state["opt"])
        loop.since_fired = state["since_fired"].to(device)
        loop.l0_coef, loop.seconds = torch.tensor(float(state["l0_coef"]), dtype=torch.float64), state["seconds"]
    loop.l0_coef = loop.l0_coef.to(device)
    return loop, 0 if state is None else int(state["step"])


def _optimizer(tc: CrossLayerTranscoder, cfg: TrainConfig) -> torch.optim.Adam:
    # the skip starts at its least-squares optimum: a small rate keeps Adam's fixed-size steps from adding noise
    groups = [{"params": [p for name, p in tc.named_parameters() if name != "W_skip"], "lr_scale": 1.0}]
    if tc.W_skip is not None:
        groups.append({"params": [tc.W_skip], "lr_scale": SKIP_LR_SCALE if cfg.lsq_skip_init else 1.0})
    return torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.999), fused=True)


def _run(
    loop: _Loop,
    data: _Batches,
    start: int,
    ckpt: Path,
    on_step: Callable[[int, torch.Tensor], None],
    should_stop: Callable[[], bool] | None,
    ckpt_every_s: float,
    device: torch.device,
) -> None:
    cfg = loop.cfg
    resample_at = {int(loop.total_steps * f) for f in cfg.resample_at}
    norm_x, norm_y = loop.sx.to(device)[:, None, None], loop.sy.to(device)[:, None, None]
    t0 = last = time.monotonic()
    for step in range(start, loop.total_steps):
        xb, yb = data.batch(step)
        mse = train_step(loop, xb, yb, norm_x, norm_y, step, step in resample_at)
        on_step(xb.shape[1], 1 - mse)
        stop = should_stop is not None and should_stop()
        if stop or time.monotonic() - last > ckpt_every_s:
            loop.save(ckpt, step + 1, loop.seconds + time.monotonic() - t0)
            last = time.monotonic()
        if stop:
            raise KeyboardInterrupt


def train_step(
    loop: _Loop,
    xb: torch.Tensor,
    yb: torch.Tensor,
    norm_x: torch.Tensor,
    norm_y: torch.Tensor,
    step: int,
    resample: bool,
) -> torch.Tensor:
    """One step on a raw batch [L, B, d] (on the device; norm_x, norm_y [L, 1, 1] the scales): the optimiser
    step, then the dead features' nudge (and at a resampling step their restart). Returns mse / variance as a
    0-dim tensor on the device."""
    xb, yb = xb.float() / norm_x, yb.float() / norm_y
    mse, dead, _codes, yh = _step(loop, xb, yb, step)
    _revive(loop, dead, step, resample, xb, yb - yh)
    return mse


def _step(
    loop: _Loop, xb: torch.Tensor, yb: torch.Tensor, step: int
) -> tuple[torch.Tensor, torch.Tensor, list[Codes], torch.Tensor]:
    """One optimiser step on a normalised batch [L, B, d]: (mse / variance, dead features [L, width], the
    batch's codes, the reconstruction without grad)."""
    cfg, tc = loop.cfg, loop.tc
    for g in loop.opt.param_groups:
        g["lr"] = lr_at(step, loop.total_steps, cfg) * g["lr_scale"]
    codes = [tc.encode(layer, xb[layer]) for layer in range(tc.n_layers)]
    yh = tc.decode(codes, xb)
    mse = (yh - yb).pow(2).sum() / (yb - yb.mean(1, keepdim=True)).pow(2).sum()
    loss = mse
    if tc.log_thr is not None:
        # the weight in float32, as a Python float's would be: the same numbers as before it lived on the device
        loss = loss + loop.l0_coef.float() * sparsity_penalty(tc, codes, xb.shape[1], cfg.sparsity_c)
    loop.opt.zero_grad(set_to_none=True)
    loss.backward()
    loop.opt.step()
    if tc.log_thr is None:
        tc.normalise_decoder()
    else:
        _steer(loop, codes, xb.shape[1])
    return mse.detach(), _track_firing(loop, codes, xb.shape[1]), codes, yh.detach()


@torch.no_grad()
def _steer(loop: _Loop, codes: list[Codes], batch: int) -> None:
    """The sparsity weight grows while the mean L0 per layer is above k and shrinks while it is below (in
    float64 on the device, as it was in Python floats)."""
    active = torch.stack([c.active.sum() for c in codes]).sum()
    l0 = active.double() / (batch * len(codes))
    loop.l0_coef = loop.l0_coef * torch.exp(0.05 * (l0 / loop.cfg.k - 1))


@torch.no_grad()
def _track_firing(loop: _Loop, codes: list[Codes], batch: int) -> torch.Tensor:
    loop.since_fired += batch
    for layer, c in enumerate(codes):
        loop.since_fired[layer].masked_fill_(fired_latents(c.feats, c.active, loop.tc.width), 0)
    return loop.since_fired > loop.cfg.dead_window


@torch.no_grad()
def _revive(loop: _Loop, dead: torch.Tensor, step: int, resample: bool, xb: torch.Tensor, err: torch.Tensor) -> None:
    """Dead features: an encoder-bias nudge before the decay phase, and at the resampling steps a restart on
    badly reconstructed tokens of their layer (this batch's)."""
    cfg, tc = loop.cfg, loop.tc
    if cfg.dead_boost > 0 and step < int(loop.total_steps * (1 - cfg.decay_frac)):
        nudge_dead(tc.b_enc, dead, cfg.dead_boost * lr_at(step, loop.total_steps, cfg))
    if not resample:
        return
    for layer in range(tc.n_layers):  # a resampling step (a few per run): it may read the device
        ids = dead[layer].nonzero().squeeze(1)
        if len(ids):
            _resample(loop, layer, ids, xb[layer], err[layer])
    loop.since_fired.masked_fill_(dead, 0)


def _resample(loop: _Loop, layer: int, ids: torch.Tensor, x: torch.Tensor, err: torch.Tensor) -> None:
    """Point dead features at distinct tokens drawn ∝ their squared error: encoder row = the token's input
    direction at the live rows' mean norm, decoder = its error direction at this layer (nothing further on),
    bias and threshold the live ones' means; their Adam state is reset."""
    tc, d = loop.tc, loop.tc.d
    w = (err.pow(2).sum(1) + 1e-12).cpu()
    rows = torch.multinomial(w, len(ids), replacement=len(ids) > len(x), generator=loop.gen).to(x.device)
    live = torch.ones(tc.width, dtype=torch.bool, device=x.device)
    live[ids] = False
    W_enc, W_dec = tc.W_enc[layer], tc.W_dec[layer]
    xc = x[rows] - x.mean(0)
    W_enc[ids] = xc / xc.norm(dim=1, keepdim=True).clamp_min(1e-6) * W_enc[live].norm(dim=1).mean()
    tc.b_enc[layer, ids] = tc.b_enc[layer, live].mean()
    e = err[rows] / err[rows].norm(dim=1, keepdim=True).clamp_min(1e-6)
    W_dec[ids] = 0
    W_dec[ids, :d] = e * (W_dec[live].norm(dim=1).mean() if tc.log_thr is not None else 1.0)
    if tc.log_thr is not None:
        tc.log_thr[layer, ids] = tc.log_thr[layer, live].mean()
    for p, index in ((W_enc, ids), (W_dec, ids), (tc.b_enc, (layer, ids)), (tc.log_thr, (layer, ids))):
        st = loop.opt.state.get(p, {}) if p is not None else {}
        for key in ("exp_avg", "exp_avg_sq"):
            if key in st:
                st[key][index] = 0
