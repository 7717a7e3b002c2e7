"""The model's output head as the atlas needs it: final-norm gain and unembedding, in fp32.

A feature's output tokens are its decoder direction through the frozen final norm (a per-dimension gain,
centred first for LayerNorm) and the unembedding. From a loaded model the head comes from the adapter; from
a model folder it is read straight out of the safetensors, without instantiating the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from circuitboard.engine.adapters import HFModel, get_adapter


@dataclass(frozen=True)
class OutputHead:
    W_U: torch.Tensor  # [V, d]
    gain: torch.Tensor  # [d]: the frozen final norm's effective weight (Gemma: 1 + weight)
    center: bool  # LayerNorm subtracts the mean, so a direction is centred before the gain
    vocab_size: int


def head_from_model(model: HFModel) -> OutputHead:
    """The head of a loaded transformers CausalLM (through its adapter)."""
    adapter = get_adapter(model)
    W_U = adapter.W_U.float()
    norm = adapter.final_norm
    return OutputHead(W_U=W_U, gain=norm.weight.float(), center=norm.centered, vocab_size=W_U.shape[0])


_NORM_KEYS = (
    "model.norm.weight",
    "transformer.ln_f.weight",
    "model.language_model.norm.weight",
    "language_model.model.norm.weight",
    "norm.weight",
)
_UNEMBED_KEYS = ("lm_head.weight", "language_model.lm_head.weight")
_EMBED_KEYS = (
    "model.embed_tokens.weight",
    "transformer.wte.weight",
    "model.language_model.embed_tokens.weight",
    "language_model.model.embed_tokens.weight",
    "embed_tokens.weight",
)


def head_from_folder(model_dir: str | Path) -> OutputHead:
    """Read the final norm weight and unembedding from a model folder's safetensors (FileNotFoundError when
    it has none, KeyError when no unembedding is among them)."""
    model_dir = Path(model_dir)
    model_type = _model_type(json.loads((model_dir / "config.json").read_text()))
    found = _read_head_tensors(model_dir)
    norm = next((found[k] for k in _NORM_KEYS if k in found), None)
    W_U = next((found[k] for k in _UNEMBED_KEYS if k in found), None)
    if W_U is None:  # tied embeddings
        W_U = next((found[k] for k in _EMBED_KEYS if k in found), None)
    if W_U is None:
        raise KeyError(f"no unembedding (lm_head / embed_tokens) in {model_dir}")
    if norm is None:
        norm = torch.ones(W_U.shape[1])
    # Gemma 1/2/3 RMSNorm computes x * (1 + weight); every other family uses x * weight.
    gain = (1.0 + norm) if model_type.lower().startswith("gemma") else norm
    return OutputHead(W_U=W_U, gain=gain, center=model_type == "gpt2", vocab_size=W_U.shape[0])


def _model_type(cfg: dict) -> str:
    """The text model's type (a multimodal config names its text part in `text_config`)."""
    model_type = str(cfg.get("model_type", ""))
    text_cfg = cfg.get("text_config") or {}
    return str(text_cfg.get("model_type", model_type)) if model_type.endswith("conditional") else model_type


def _read_head_tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no safetensors in {model_dir}")
    found: dict[str, torch.Tensor] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as sf:
            keys = set(sf.keys())
            for group in (_NORM_KEYS, _UNEMBED_KEYS, _EMBED_KEYS):
                for key in group:
                    if key in keys and key not in found:
                        found[key] = sf.get_tensor(key).float()
    return found
