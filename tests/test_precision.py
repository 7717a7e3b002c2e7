"""The compute dtype: measured once per process, overridable, and never bf16 where bf16 is the slow one."""

from __future__ import annotations

import pytest
import torch

from circuitboard import precision


@pytest.fixture(autouse=True)
def _fresh_cache():
    precision.compute_dtype.cache_clear()
    yield
    precision.compute_dtype.cache_clear()


@pytest.mark.parametrize(
    ("value", "dtype"), [("bf16", torch.bfloat16), ("fp32", torch.float32), ("float32", torch.float32)]
)
def test_environment_overrides_the_measurement(monkeypatch, value, dtype):
    monkeypatch.setenv("CIRCUITBOARD_COMPUTE_DTYPE", value)
    assert precision.compute_dtype() is dtype


def test_unknown_override_is_refused(monkeypatch):
    monkeypatch.setenv("CIRCUITBOARD_COMPUTE_DTYPE", "fp8")
    with pytest.raises(ValueError, match="CIRCUITBOARD_COMPUTE_DTYPE"):
        precision.compute_dtype()


def test_measurement_picks_the_faster_dtype(monkeypatch):
    monkeypatch.delenv("CIRCUITBOARD_COMPUTE_DTYPE", raising=False)
    # bf16 emulated (4x slower, as on AVX-512 CPUs without BF16 instructions) -> fp32
    monkeypatch.setattr(precision, "_matmul_seconds", lambda dt: 4.0 if dt is torch.bfloat16 else 1.0)
    assert precision.compute_dtype() is torch.float32
    precision.compute_dtype.cache_clear()
    # native bf16 (twice as fast) -> bf16; only 10% faster is not worth the precision -> fp32
    monkeypatch.setattr(precision, "_matmul_seconds", lambda dt: 0.5 if dt is torch.bfloat16 else 1.0)
    assert precision.compute_dtype() is torch.bfloat16
    precision.compute_dtype.cache_clear()
    monkeypatch.setattr(precision, "_matmul_seconds", lambda dt: 0.9 if dt is torch.bfloat16 else 1.0)
    assert precision.compute_dtype() is torch.float32
    assert precision.compute_dtype("cuda:0") is torch.bfloat16


def test_named_precisions(monkeypatch):
    monkeypatch.setenv("CIRCUITBOARD_COMPUTE_DTYPE", "fp32")
    assert precision.dtype_for("bf16") is torch.bfloat16
    assert precision.dtype_for("fp32") is torch.float32
    assert precision.dtype_for("auto") is torch.float32  # as measured (here: forced)
    with pytest.raises(ValueError, match="precision"):
        precision.dtype_for("fp16")
