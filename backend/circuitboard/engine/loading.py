"""Load a causal LM and its tokenizer from a local folder, a GGUF file, or a hub id (when online).

transformers is imported inside the functions that need it: its model code takes seconds to import, which a
process that traces from a plain model folder never pays (`engine.native`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from circuitboard.precision import resolve_dtype


def default_device() -> torch.device:
    """`CIRCUITBOARD_DEVICE` when set (cpu, cuda, cuda:1 ...), else cuda when available, else cpu."""
    forced = os.environ.get("CIRCUITBOARD_DEVICE", "").strip()
    return torch.device(forced or ("cuda" if torch.cuda.is_available() else "cpu"))


def bos_token_id(tokenizer: Any) -> int | None:
    """The token a sequence starts with: BOS, else EOS, else PAD (None when the tokenizer has none of them).

    Traces, the activation cache and the atlas all put it at position 0, which carries no features."""
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id):
        if tid is not None:
            return int(tid)
    return None


def load_tokenizer(model_dir: str | Path) -> Any:
    """The tokenizer of a model folder, without loading the model."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def layer_count(model_dir: str | Path) -> int:
    """How many transformer layers a model folder's model has, from its config alone."""
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(str(model_dir)).get_text_config().num_hidden_layers)


def load_model(
    ref: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float32",
    pattern_attention: bool = True,
    warm_up: bool = True,
) -> tuple[Any, Any, str]:
    """Return (model, tokenizer, name). The model routes attention through our pattern-aware function;
    `pattern_attention=False` keeps the model's own attention kernel (the data stage's plain forward passes
    over the corpus need no patterns, and the activation cache has always been computed that way).
    `warm_up=False` skips the warm-up forward: a one-shot process (`circuitboard trace`) runs its own forward
    first anyway, so warming up there is only an extra forward pass."""
    from circuitboard.engine import patterns  # registers our attention function with transformers

    device = torch.device(device) if device is not None else default_device()
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype)}
    if pattern_attention:
        kwargs["attn_implementation"] = "eager"
    model, tokenizer, name = _from_pretrained(ref, kwargs)
    model.to(device).eval()
    model.requires_grad_(False)
    if pattern_attention:
        patterns.use_pattern_attention(model)
    if warm_up:
        _warm_up(model, device)
    return model, tokenizer, name


def _warm_up(model: Any, device: torch.device) -> None:
    """One tiny forward pages in memory-mapped weights and warms kernels, so a server's first trace is not slow."""
    with torch.no_grad():
        model(input_ids=torch.zeros(1, 2, dtype=torch.long, device=device), use_cache=False, logits_to_keep=1)


def _from_pretrained(ref: str | Path, kwargs: dict[str, Any]) -> tuple[Any, Any, str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(ref)
    if path.is_file() and path.suffix == ".gguf":
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, **kwargs)
        return model, tokenizer, path.stem
    if path.is_dir():
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        return model, tokenizer, path.name if path.name != "model" else path.parent.name
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise FileNotFoundError(
            f"model {ref!r} is not a local folder or .gguf file, and the hub is offline "
            "(HF_HUB_OFFLINE=1): download it on a connected machine or use a preset"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(ref))
    model = AutoModelForCausalLM.from_pretrained(str(ref), **kwargs)
    return model, tokenizer, str(ref)
