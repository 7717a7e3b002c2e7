"""Attention patterns: capture them from the model's own eager attention, or freeze them.

We register one attention function with transformers. It runs the architecture's own eager attention (so
rotary embeddings, qk-norms, sliding windows and soft-capping stay the model's business) and then either
records the pattern or overwrites the prompt's block of it with a frozen copy. Query rows beyond the frozen
prompt (generated tokens) keep their live pattern. The function is registered when a model first uses it, so
importing this module does not import transformers.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys

import torch

NAME = "circuitboard"

_capture: contextvars.ContextVar[dict | None] = contextvars.ContextVar("capture", default=None)
_frozen: contextvars.ContextVar[dict | None] = contextvars.ContextVar("frozen", default=None)


def _attention(module, query, key, value, attention_mask, **kwargs):
    eager = sys.modules[type(module).__module__].eager_attention_forward
    out, weights = eager(module, query, key, value, attention_mask, **kwargs)
    frozen = _frozen.get()
    if frozen is not None and module.layer_idx in frozen:
        pattern = frozen[module.layer_idx].to(weights.dtype)  # [H, P0, P0]
        p0 = pattern.shape[-1]
        weights = weights.clone()
        weights[..., :p0, :] = 0
        weights[..., :p0, :p0] = pattern
        groups = weights.shape[1] // value.shape[1]
        v = value.repeat_interleave(groups, dim=1) if groups > 1 else value
        out = (weights @ v).transpose(1, 2).contiguous()
    captured = _capture.get()
    if captured is not None:
        captured[module.layer_idx] = weights[0].detach()
    return out, weights


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(NAME, _attention)
    # Our function takes eager's additive masks (causal, sliding window), not sdpa's implicit causality.
    AttentionMaskInterface.register(NAME, eager_mask)


def use_pattern_attention(model) -> None:
    """Route the model's attention through this module (eager maths, same results)."""
    _register()
    model.set_attn_implementation(NAME)


@contextlib.contextmanager
def capturing():
    """Collect {layer: pattern [H, P, P]} of batch row 0 for every attention call inside the block."""
    store: dict[int, torch.Tensor] = {}
    token = _capture.set(store)
    try:
        yield store
    finally:
        _capture.reset(token)


@contextlib.contextmanager
def frozen(patterns: dict[int, torch.Tensor] | None):
    token = _frozen.set(patterns)
    try:
        yield
    finally:
        _frozen.reset(token)
