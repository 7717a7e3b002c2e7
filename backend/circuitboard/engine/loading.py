"""Load a causal LM and its tokenizer from a local folder, a GGUF file, or a hub id (when online)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from circuitboard.engine import patterns

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    return DTYPES[dtype]


def load_model(ref: str | Path, *, device: str | torch.device | None = None, dtype: str | torch.dtype = "float32"):
    """Return (model, tokenizer, name). The model routes attention through our pattern-aware function."""
    device = torch.device(device) if device is not None else default_device()
    torch_dtype = resolve_dtype(dtype)
    path = Path(ref)
    kwargs = dict(dtype=torch_dtype, attn_implementation="eager")
    if path.is_file() and path.suffix == ".gguf":
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, **kwargs)
        name = path.stem
    elif path.is_dir():
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        name = path.name if path.name != "model" else path.parent.name
    else:
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            raise FileNotFoundError(
                f"model {ref!r} is not a local folder or .gguf file, and the hub is offline "
                "(HF_HUB_OFFLINE=1): download it on a connected machine or use a preset"
            )
        tokenizer = AutoTokenizer.from_pretrained(str(ref))
        model = AutoModelForCausalLM.from_pretrained(str(ref), **kwargs)
        name = str(ref)
    model.to(device).eval()
    model.requires_grad_(False)
    patterns.use_pattern_attention(model)
    # One tiny forward pages in memory-mapped weights and warms kernels, so the first trace is not slow.
    with torch.no_grad():
        model(input_ids=torch.zeros(1, 2, dtype=torch.long, device=device), use_cache=False, logits_to_keep=1)
    return model, tokenizer, name
