"""Transcoder encoding for the atlas: each layer's view of a transcoder set, and the encoder that turns cached
MLP inputs into sparse (token, feature, value) triplets.

Transcoders come from the engine's `load_transcoder_set` (every circuit-tracer layout, CLTs, lazy decoders).
For a CLT a feature's output direction is the sum of its decoder rows over the layers it writes to (its total
direct write into the residual stream).

Threads: small (~1e5-element) ops run on one thread, and the encoder's matmul picks all threads or one by
timing both (on 2 shared cores, OpenMP stalls made multi-threaded small ops 10-50x slower).

Device: the encoder's weights live on the scan's device (`Encoder(device=)`); cached rows are copied there
pinned and without blocking (`to_device`), and the one read back of a chunk is the compaction of its nonzero
activations into triplets (their count is data).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from circuitboard.data.activations import to_device
from circuitboard.engine.transcoders import TranscoderSet, load_transcoder_set
from circuitboard.precision import dtype_for

# ---------------------------------------------------------------------------------------------------------
# Transcoders
# ---------------------------------------------------------------------------------------------------------


@dataclass
class LayerTranscoder:
    W_enc: torch.Tensor  # [d_t, d]
    b_enc: torch.Tensor  # [d_t]
    W_dec: torch.Tensor  # [d_t, d]: the total output direction of each feature
    activation: str  # "relu" | "jumprelu" | "topk"
    threshold: torch.Tensor | None = None  # [d_t] for JumpReLU
    k: int | None = None  # for TopK

    @property
    def d_transcoder(self) -> int:
        return self.W_enc.shape[0]


def open_transcoders(path: str | Path) -> TranscoderSet:
    """The transcoder set in a folder, decoders left on disk until a layer is built."""
    if not Path(path).is_dir():
        raise FileNotFoundError(f"no transcoder folder at {path}")
    return load_transcoder_set(path, lazy_decoder=True)


def layer_transcoder(tset: TranscoderSet, layer: int) -> LayerTranscoder:
    """One layer in fp32, with each feature's decoder rows summed over the layers it writes to."""
    lw = tset.layers[layer]
    d_t = lw.W_enc.shape[0]
    dec = tset.decoder_rows(layer, torch.arange(d_t)).float().sum(1)  # [d_t, d]
    act = lw.activation
    thr = act.threshold.float().reshape(-1) if act.threshold is not None else None
    return LayerTranscoder(lw.W_enc.float(), lw.b_enc.float(), dec, act.kind, threshold=thr, k=act.k)


def transcoders_fingerprint(path: str | Path) -> str:
    """Cheap identity of a set (names, sizes, mtimes) so a rebuilt set invalidates a resumed atlas."""
    root = Path(path)
    parts = []
    for f in sorted(root.rglob("*")):
        if f.is_file() and f.suffix in (".safetensors", ".npz", ".yaml"):
            st = f.stat()
            parts.append(f"{f.relative_to(root)}:{st.st_size}:{int(st.st_mtime)}")
    return "|".join(parts)


# ---------------------------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------------------------


@contextmanager
def one_thread() -> Iterator[None]:
    """Run small (~1e5-element) ops on one thread. On 2 cores shared with other processes every OpenMP
    region waits for a scheduler slice, which made these ops 10-50x slower than single-threaded; the big
    matmuls and top-ks stay multi-threaded."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class ThreadTuner:
    """Chooses, for the encoder's matmul + top-k, between all threads and one thread by timing both.

    On a quiet machine all threads are ~2x faster; when other processes hold the cores, OpenMP regions
    stall and one thread wins. Every `period` chunks both settings are timed once more (contention comes
    and goes), and the faster one by a running average is used for the rest.
    """

    def __init__(self, period: int = 16):
        self.n = torch.get_num_threads()
        self.period = period
        self.avg: dict[int, float] = {}
        self.i = 0

    def pick(self) -> int:
        if self.n == 1:
            return 1
        if self.n not in self.avg:
            return self.n
        if 1 not in self.avg:
            return 1
        phase = self.i % self.period
        return self.n if phase == 0 else 1 if phase == 1 else self.best()

    def best(self) -> int:
        return min(self.avg, key=lambda threads: self.avg[threads]) if self.avg else self.n

    def record(self, threads: int, seconds: float, per: float) -> None:
        self.i += 1
        if self.i == 1:
            return  # the first chunk pays one-off allocation costs: not a fair sample
        rate = seconds / max(per, 1.0)
        prev = self.avg.get(threads)
        self.avg[threads] = rate if prev is None else 0.5 * prev + 0.5 * rate


# ---------------------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------------------


def nonzero_rows(mask: torch.Tensor) -> torch.Tensor:
    """Indices where a 1-D mask holds: a chunk's one read back (how many there are is data)."""
    return mask.nonzero().squeeze(1)


class Encoder:
    """Transcoder encoding of cached MLP inputs to sparse triplets, plus single-feature re-encoding, on
    `device` (in the matmul dtype `precision` gives there)."""

    def __init__(self, tc: LayerTranscoder, precision: str, device: torch.device | str = "cpu"):
        self.tc, self.device = tc, torch.device(device)
        self.dtype = dtype_for(precision, self.device.type)
        self.W = tc.W_enc.to(self.device, self.dtype).contiguous()
        self.b = tc.b_enc.to(self.device, torch.float32)
        self.thr = tc.threshold.to(self.device, torch.float32) if tc.threshold is not None else None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """x [C, d] (any device) -> (c, f, v, kth) on the encoder's device: token index, feature and value of
        every nonzero activation, and for TopK the per-token k-th pre-activation (to re-derive window
        activations later). The compaction to nonzeros is the one read back (its count is data)."""
        x = to_device(x, self.device).to(self.dtype)
        if self.tc.activation == "topk":
            # bias inside the matmul (addmm) and top-k straight on its output: no [C, F] float copy
            pre = torch.addmm(self.b.to(self.dtype), x, self.W.T)
            k = min(self.tc.k or 1, pre.shape[1])
            v, f = pre.topk(k, dim=1)
            with one_thread():
                v = v.float()
                kth = v[:, -1].clone()
                c = torch.arange(pre.shape[0], device=self.device).repeat_interleave(k)
                v, f = v.reshape(-1), f.reshape(-1)
                nz = nonzero_rows(v > 0)
                return c[nz], f[nz], v[nz], kth
        act = torch.addmm(self.b.to(self.dtype).unsqueeze(1), self.W, x.T).float()
        if self.thr is not None:  # JumpReLU: a * (a > θ)
            act = torch.where((act > self.thr.unsqueeze(1)) & (act > 0), act, torch.zeros((), device=self.device))
        else:
            act.clamp_min_(0)
        f, c = act.nonzero(as_tuple=True)
        return c, f, act[f, c], None

    def encode_windows(self, x: torch.Tensor, f0: int, kth: torch.Tensor | None) -> torch.Tensor:
        """x [n, S, W, d] windows of features f0..f0+n-1 -> their own activations [n, S, W].

        Feature-major blocks: one bmm per block against the block's encoder rows, no per-example gather of
        encoder rows."""
        n, S, W, d = x.shape
        w = self.W[f0 : f0 + n].unsqueeze(2)  # [n, d, 1]
        pre = torch.bmm(to_device(x, self.device).view(n, S * W, d).to(self.dtype), w).view(n, S, W).float()
        pre += self.b[f0 : f0 + n].view(n, 1, 1)
        zero = torch.zeros((), device=self.device)
        if self.tc.activation == "topk":
            assert kth is not None
            return torch.where((pre >= kth.to(self.device)) & (pre > 0), pre, zero)
        if self.thr is not None:
            thr = self.thr[f0 : f0 + n].view(n, 1, 1)
            return torch.where((pre > thr) & (pre > 0), pre, zero)
        return pre.clamp_min(0)
