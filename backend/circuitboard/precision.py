"""Which dtype heavy matmuls run in, chosen by measuring this machine once per process.

bf16 is only fast where the hardware has it (CUDA; CPUs with AVX512-BF16 or AMX). Elsewhere PyTorch emulates
it: on a Xeon with AVX-512 but no BF16 instructions a bf16 matmul ran at 57 GFLOP/s against 260 in fp32, and
a Gemma 3 270M forward at 270 tokens/s against 972. Training, the activation cache and the atlas therefore ask
here instead of assuming; results stay comparable because storage (the activation cache) is bf16 either way.

`CIRCUITBOARD_COMPUTE_DTYPE=bf16|fp32` overrides the measurement. This module is also the one table of dtype
names (`DTYPES`, with the short forms bf16 / fp32 / fp16).
"""

from __future__ import annotations

import functools
import os
import time

import torch

# Every dtype name the project accepts (`--dtype`, CIRCUITBOARD_DTYPE, CIRCUITBOARD_COMPUTE_DTYPE, `--precision`).
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_SHORT = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# Heavy matmuls run in one of these; float16 is only a storage/model dtype here.
_COMPUTE = (torch.float32, torch.bfloat16)


def named_dtype(name: str | torch.dtype) -> torch.dtype | None:
    """The dtype of a long (`bfloat16`) or short (`bf16`) name, a torch.dtype as it is, None when unknown."""
    if isinstance(name, torch.dtype):
        return name
    return DTYPES.get(_SHORT.get(name, name))


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """A model/transcoder dtype by name (or as given); ValueError naming the choices when unknown."""
    found = named_dtype(dtype)
    if found is None:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    return found


def _compute_named(name: str) -> torch.dtype | None:
    found = named_dtype(name)
    return found if found in _COMPUTE else None


def _matmul_seconds(dtype: torch.dtype, n: int = 512, reps: int = 4) -> float:
    a = torch.randn(n, 640, dtype=dtype)
    b = torch.randn(640, 1024, dtype=dtype)
    a @ b  # first call pays for allocation and kernel selection
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return time.perf_counter() - t


def matmul_gflops(dtype: torch.dtype = torch.float32, tries: int = 3, n: int = 512, reps: int = 4) -> float:
    """This process's matmul rate in GFLOP/s, from the best of `tries` of the timing `compute_dtype` makes."""
    seconds = min(_matmul_seconds(dtype, n, reps) for _ in range(tries))
    return 2 * n * 640 * 1024 * reps / seconds / 1e9


@functools.cache
def compute_dtype(device: str = "cpu") -> torch.dtype:
    """bf16 when it is at least 1.3x faster than fp32 on `device` (always on CUDA), else fp32."""
    forced = os.environ.get("CIRCUITBOARD_COMPUTE_DTYPE", "").strip().lower()
    if forced:
        dtype = _compute_named(forced)
        if dtype is None:
            raise ValueError(f"CIRCUITBOARD_COMPUTE_DTYPE={forced!r}: use bf16 or fp32")
        return dtype
    if str(device).startswith("cuda"):
        return torch.bfloat16
    fp32 = min(_matmul_seconds(torch.float32) for _ in range(2))
    bf16 = min(_matmul_seconds(torch.bfloat16) for _ in range(2))
    return torch.bfloat16 if bf16 * 1.3 < fp32 else torch.float32


def dtype_for(precision: str, device: str = "cpu") -> torch.dtype:
    """ "bf16" / "fp32" as asked, "auto" as measured (`compute_dtype`)."""
    if precision == "auto":
        return compute_dtype(device)
    dtype = _compute_named(precision)
    if dtype is None:
        raise ValueError(f"precision must be auto, bf16 or fp32, not {precision!r}")
    return dtype


def compute_dtype_name(device: str = "cpu") -> str:
    return "bf16" if compute_dtype(device) == torch.bfloat16 else "fp32"
