"""GPU readiness (issue 16): the training step loops keep their tensors on the device and never read one back.

The loops run on the `meta` device, where tensors have shapes but no values: any hidden device -> host read
(`.item()`, `.tolist()`, `float()`, a tensor in an `if`, a boolean-mask index, `nonzero()`, `.cpu()`) raises there.
The initialisation (on the CPU by design) runs for real; then every step of the run is on meta. The optimiser is
the real fused Adam (PyTorch has its meta kernel; its device check is widened to admit meta). The reads allowed
by design stay out of the runs: the resampling steps (`resample_at=()`), the checkpoints (none is due), and
JumpReLU's selection (a data-dependent count), which one test replaces by a fixed-size one."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from circuitboard.training import clt_train
from circuitboard.training.clt import BANDWIDTH, CrossLayerTranscoder
from circuitboard.training.config import TrainConfig
from circuitboard.training.layer import _dead_topk, train_layer
from circuitboard.training.run import Progress, Splits

META = torch.device("meta")

PLT = TrainConfig(
    width=64, k=4, train_tokens=2_000, heldout_tokens=500, steps_tokens=1_280, batch_size=64, warmup_steps=2,
    dead_window=64, resample_at=(),
)  # fmt: skip
CLT = replace(PLT, kind="clt", activation="topk", skip=False, chunk_tokens=512)


@pytest.fixture(autouse=True)
def fused_adam_on_meta(monkeypatch):
    """The fused Adam the trainers use has a meta kernel; only its constructor's device list lacks meta."""
    import torch.optim.optimizer as optimizer

    devices = optimizer._get_fused_kernels_supported_devices()
    monkeypatch.setattr(optimizer, "_get_fused_kernels_supported_devices", lambda: [*devices, "meta"])


def _rows(n: int = 640, d: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.randn(d, d, generator=g) + 0.1 * torch.randn(n, d, generator=g)
    return x.bfloat16(), y.bfloat16()


def _bar() -> Progress:
    return Progress(False, 0, 0)  # smooths the EV on the device; no bar, so never reads it


def _on_meta(module: torch.nn.Module) -> None:
    assert all(p.device == META for p in module.parameters())


def test_plt_topk_run_never_reads_the_device():
    x, y = _rows()
    bar = _bar()
    tc, sx, sy = train_layer(x, y, PLT, on_step=bar.on_step, device=META)
    _on_meta(tc)
    assert isinstance(bar.ev, torch.Tensor) and bar.ev.device == META


def test_plt_topk_with_the_dead_nudge_off_and_skip_off_too():
    x, y = _rows(seed=1)
    tc, _, _ = train_layer(x, y, replace(PLT, skip=False, dead_boost=0.0), on_step=_bar().on_step, device=META)
    _on_meta(tc)


def test_plt_with_auxk_never_reads_the_device():
    x, y = _rows(seed=3)
    tc, _, _ = train_layer(x, y, replace(PLT, aux_coef=1.0, aux_k=8), on_step=_bar().on_step, device=META)
    _on_meta(tc)


def test_auxk_masked_top_k_picks_what_the_gathered_one_does():
    """Off the CPU AuxK picks the dead latents by a masked top-k of fixed size; it must pick the same ones."""
    g = torch.Generator().manual_seed(0)
    pre = torch.randn(6, 40, generator=g)
    for n_dead in (3, 8, 20):  # fewer dead latents than k, as many, more
        dead = torch.zeros(40, dtype=torch.bool)
        dead[torch.randperm(40, generator=g)[:n_dead]] = True
        ia, va, real_a = _dead_topk(pre, dead, 8, compact=True)
        ib, vb, real_b = _dead_topk(pre, dead, 8, compact=False)
        assert real_a is None and real_b is not None and int(real_b.sum()) == 6 * min(8, n_dead)
        for row in range(6):
            got = {(int(i), float(v)) for i, v, r in zip(ib[row], vb[row], real_b[row], strict=True) if r}
            assert got == {(int(i), float(v)) for i, v in zip(ia[row], va[row], strict=True)}
    assert _dead_topk(pre, torch.zeros(40, dtype=torch.bool), 8, compact=True) is None


def test_clt_run_on_cached_chunks_never_reads_the_device(cache, tmp_path):
    root, m = cache
    cfg = replace(CLT, width=32)
    data = clt_train._Chunks(root / "acts", m, Splits.of(m, cfg).train, cfg, META)
    loop, start = clt_train._start(data, cfg, tmp_path / "none.ckpt.pt", META)
    bar = _bar()
    clt_train._run(loop, data, start, tmp_path / "none.ckpt.pt", bar.on_step, None, 1e9, META)
    _on_meta(loop.tc)
    assert data._xy is not None and data._xy[0].device == META and loop.since_fired.device == META


def test_jumprelu_steps_never_read_the_device_but_for_the_selection(monkeypatch, tmp_path):
    """A JumpReLU layer (a CLT of one layer): its selection, the one read of a step by design, is replaced by a
    fixed k per token; the penalty, the thresholds' gradient and the steering of its weight stay on meta."""

    def fixed_selection(self: CrossLayerTranscoder, layer: int, pre: torch.Tensor):
        assert self.log_thr is not None  # the JumpReLU branch
        pre = pre - (self.log_thr[layer].exp() - BANDWIDTH / 2)
        feats = pre.topk(self.k, dim=1, sorted=False).indices.reshape(-1)
        return torch.arange(len(pre), device=pre.device).repeat_interleave(self.k), feats

    monkeypatch.setattr(CrossLayerTranscoder, "_select", fixed_selection)
    x, y = _rows(seed=2)
    cfg = replace(PLT, activation="jumprelu")
    tc, sx, sy = clt_train.train_jumprelu_layer(
        x, y, cfg, ckpt_path=tmp_path / "none.ckpt.pt", on_step=_bar().on_step, device=META, ckpt_every_s=1e9
    )
    _on_meta(tc)
    assert tc.log_thr is not None and tc.log_thr.device == META


def test_the_bar_reads_the_ev_only_when_it_redraws():
    bar = Progress(True, 1_000, 0, read_every=3)
    try:
        for _ in range(2):
            bar.on_step(10, torch.zeros((), device=META))  # smoothed on meta: no read
        with pytest.raises((RuntimeError, NotImplementedError)):
            bar.on_step(10, torch.zeros((), device=META))  # the third redraws: its one read
    finally:
        bar.close()


def test_the_meta_device_catches_a_host_read():
    """The guard itself: each kind of read the loops avoid raises on meta."""
    t = torch.zeros(4, device=META)
    for read in (lambda: t.sum().item(), lambda: bool(t.any()), lambda: t[t > 0], lambda: t.nonzero(), t.tolist):
        with pytest.raises((RuntimeError, NotImplementedError)):
            read()
