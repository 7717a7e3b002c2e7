"""A model folder read straight from its files (config.json, *.safetensors, tokenizer.json), without transformers.

Importing transformers' model code costs a one-shot process seconds before any work (bench/README.md, start-up),
and a trace needs none of it: `adapters.get_adapter` reads weights, norms and the attention's settings, and the
engine runs its own forward. So this module lays the checkpoint's tensors out under transformers' module names
and gives each attention module the attributes transformers' would have (scaling, sliding window, soft-cap,
rotary tables), by transformers' rules for each architecture's config. Only the MLPs and embeddings run here;
the modules have no forward of their own otherwise, so a process that needs the model itself (generation,
interventions) loads it through transformers (`loading.load_model`).

`load_native` returns None for anything outside what it knows — a GGUF file, a hub id, a multimodal folder,
a rope type other than default or linear, an unknown activation — and the caller loads through transformers;
a tokenizer that transformers builds by its own class's rules comes from transformers (`file_tokenizer`).
tests/engine/test_native.py checks logits, patterns and token ids against transformers on every supported
architecture.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from safetensors import safe_open
from torch import nn
from torch.nn import functional as F

from circuitboard.engine.adapters import architecture_of_type
from circuitboard.engine.file_tokenizer import FileTokenizer, PendingTokenizer, Unsupported

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": F.silu,
    "swish": F.silu,
    "gelu": F.gelu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    # transformers' NewGELUActivation: the formula itself, not torch's tanh kernel (they differ in the last bits)
    "gelu_new": lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0)))),
}
_ROPE_TYPES = ("default", "linear")


# ----------------------------------------------------------------------------------------------- modules


class _Weights(nn.Module):
    """A module that only holds tensors (a linear map, a norm) under transformers' attribute names."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, eps: float | None = None):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False) if bias is not None else None
        if eps is not None:
            self.eps = eps


class _Linear(_Weights):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class _Conv1D(_Weights):
    """GPT-2's linear layer: weight [in, out], x @ W + b."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.bias is not None  # GPT-2's layers all have one
        out = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight)
        return out.view(*x.shape[:-1], -1)


class _Embedding(_Weights):
    def __init__(self, weight: torch.Tensor, scale: float | None = None):
        super().__init__(weight)
        # Gemma multiplies by sqrt(d_model), held as a tensor cast to the weights' dtype (as transformers does).
        self.embed_scale = torch.tensor(scale) if scale is not None else None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = F.embedding(ids, self.weight)
        return out * self.embed_scale.to(self.weight.dtype) if self.embed_scale is not None else out


class _GatedMLP(nn.Module):
    def __init__(self, gate: _Linear, up: _Linear, down: _Linear, act: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj, self.act_fn = gate, up, down, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class _GPT2MLP(nn.Module):
    def __init__(self, c_fc: _Conv1D, c_proj: _Conv1D, act: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.c_fc, self.c_proj, self.act = c_fc, c_proj, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class _Attention(nn.Module):
    """What `get_adapter` reads of a transformers attention module: projections, qk-norms and settings."""

    def __init__(self, **modules: nn.Module):
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)
        self.layer_type: str | None = None
        self.scaling = 1.0
        self.sliding_window: int | None = None
        self.attn_logit_softcapping: float | None = None


class _TiedHead(nn.Module):
    """The unembedding as the embedding's own parameter, as transformers ties it (counted once)."""

    def __init__(self, weight: nn.Parameter):
        super().__init__()
        self.weight = weight
        self.bias: torch.Tensor | None = None


class _Rotary(nn.Module):
    """Rotary tables under transformers' names: `inv_freq` (one table) or `{layer_type}_inv_freq` (Gemma 3)."""

    def __init__(self, tables: dict[str | None, tuple[torch.Tensor, str]]):
        super().__init__()
        self.rope_type: str | dict[str, str]
        if list(tables) == [None]:
            inv_freq, self.rope_type = tables[None]
            self.register_buffer("inv_freq", inv_freq, persistent=False)
            self.attention_scaling = 1.0
            return
        self.rope_type = {}
        for layer_type, (inv_freq, rope_type) in tables.items():
            assert layer_type is not None
            self.rope_type[layer_type] = rope_type
            self.register_buffer(f"{layer_type}_inv_freq", inv_freq, persistent=False)
            setattr(self, f"{layer_type}_attention_scaling", 1.0)


class NativeModel(nn.Module):
    """The checkpoint as modules named like transformers' *ForCausalLM, for `adapters.get_adapter`."""

    def __init__(self, config: SimpleNamespace, lm_head: nn.Module, embed: str, body_name: str, body: nn.Module):
        super().__init__()
        self.config = config
        self.lm_head = lm_head
        self._embed = embed
        setattr(self, body_name, body)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def get_input_embeddings(self) -> nn.Module:
        return self.get_submodule(self._embed)


# ----------------------------------------------------------------------------------------------- config


def _config(folder: Path) -> dict[str, Any]:
    cfg = json.loads((folder / "config.json").read_text())
    if "text_config" in cfg:
        raise Unsupported("a multimodal config (text_config)")
    return cfg


def _head_dim(cfg: dict[str, Any]) -> int:
    return int(cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"])


def _layer_types(cfg: dict[str, Any], model_type: str) -> list[str]:
    """Which layers attend through a sliding window, by transformers' rule for each family's config."""
    n = int(cfg["num_hidden_layers"])
    if cfg.get("layer_types"):
        return list(cfg["layer_types"])
    if model_type == "gemma2":
        sliding = [i % 2 == 0 for i in range(n)]
    elif model_type == "gemma3_text":
        pattern = int(cfg.get("sliding_window_pattern", 6))
        sliding = [(i + 1) % pattern != 0 for i in range(n)]
    elif model_type in ("qwen2", "qwen3"):
        sliding = [bool(cfg.get("use_sliding_window")) and i >= int(cfg.get("max_window_layers", n)) for i in range(n)]
    elif model_type == "mistral":
        sliding = [cfg.get("sliding_window") is not None] * n
    else:
        sliding = [False] * n
    return ["sliding_attention" if s else "full_attention" for s in sliding]


def _rope_params(cfg: dict[str, Any], model_type: str) -> dict[str | None, dict[str, Any]]:
    """Rope settings per layer type (key None: one for all), from either config format: transformers 5's
    `rope_parameters` or 4's `rope_theta` + `rope_scaling` (+ Gemma 3's `rope_local_base_freq`)."""
    params = cfg.get("rope_parameters")
    if isinstance(params, dict) and "rope_type" not in params and "rope_theta" not in params:
        return {k: dict(v) for k, v in params.items()}
    if isinstance(params, dict):
        return {None: dict(params)}
    scaling = dict(cfg.get("rope_scaling") or {})
    scaling.setdefault("rope_type", scaling.pop("type", "default"))
    full = {**scaling, "rope_theta": cfg.get("rope_theta", 10000.0)}
    if model_type == "gemma3_text":
        local = {"rope_type": "default", "rope_theta": cfg.get("rope_local_base_freq", 10000.0)}
        return {"full_attention": full, "sliding_attention": local}
    return {None: full}


def _inv_freq(params: dict[str, Any], head_dim: int, partial: float, device: torch.device) -> tuple[torch.Tensor, str]:
    rope_type = params.get("rope_type", "default")
    if rope_type not in _ROPE_TYPES or partial != 1.0:
        raise Unsupported(f"rope type {rope_type!r} (partial factor {partial})")
    inv_freq = 1.0 / (float(params["rope_theta"]) ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
    if rope_type == "linear":
        inv_freq = inv_freq / float(params["factor"])
    return inv_freq.to(device), rope_type


def _scaling(cfg: dict[str, Any], model_type: str, layer: int) -> float:
    if model_type in ("gemma2", "gemma3_text"):
        return float(cfg["query_pre_attn_scalar"]) ** -0.5
    if model_type == "gpt2":
        scale = (cfg["n_embd"] // cfg["n_head"]) ** -0.5 if cfg.get("scale_attn_weights", True) else 1.0
        return scale / float(layer + 1) if cfg.get("scale_attn_by_inverse_layer_idx") else scale
    return _head_dim(cfg) ** -0.5


# ----------------------------------------------------------------------------------------------- weights


class _Checkpoint:
    """The folder's safetensors, read one tensor at a time (by transformers' key, prefix-tolerant)."""

    def __init__(self, folder: Path, dtype: torch.dtype, device: torch.device):
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise Unsupported("no .safetensors files")
        self.dtype, self.device = dtype, device
        self.where: dict[str, Path] = {}
        for f in files:
            with safe_open(f, framework="pt") as sf:
                for key in sf.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    self.where[key] = f
        self._open: dict[Path, Any] = {}

    def has(self, key: str) -> bool:
        return key in self.where

    def get(self, key: str) -> torch.Tensor:
        f = self.where.get(key)
        if f is None:
            raise Unsupported(f"the checkpoint has no tensor {key!r}")
        if f not in self._open:
            self._open[f] = safe_open(f, framework="pt")
        return self._open[f].get_tensor(key).to(device=self.device, dtype=self.dtype)

    def maybe(self, key: str) -> torch.Tensor | None:
        return self.get(key) if self.has(key) else None

    def linear(self, prefix: str) -> _Linear:
        return _Linear(self.get(f"{prefix}.weight"), self.maybe(f"{prefix}.bias"))

    def norm(self, prefix: str, eps: float) -> _Weights:
        return _Weights(self.get(f"{prefix}.weight"), self.maybe(f"{prefix}.bias"), eps=eps)


def _activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in _ACTIVATIONS:
        raise Unsupported(f"activation {name!r}")
    return _ACTIVATIONS[name]


def _decoder(cfg: dict[str, Any], model_type: str, ck: _Checkpoint) -> NativeModel:
    gemma = model_type in ("gemma2", "gemma3_text")
    eps = float(cfg.get("rms_norm_eps", 1e-6))
    head_dim = _head_dim(cfg)
    act = _activation(cfg.get("hidden_activation") or cfg.get("hidden_act") or "silu")
    layer_types = _layer_types(cfg, model_type)
    ropes = _rope_params(cfg, model_type)
    partial = float(cfg.get("partial_rotary_factor", 1.0))
    tables = {t: _inv_freq(p, head_dim, partial, ck.device) for t, p in ropes.items()}
    window = cfg.get("sliding_window")
    layers = nn.ModuleList()
    for i in range(int(cfg["num_hidden_layers"])):
        p = f"model.layers.{i}"
        modules: dict[str, nn.Module] = {
            name: ck.linear(f"{p}.self_attn.{name}") for name in ("q_proj", "k_proj", "v_proj", "o_proj")
        }
        if model_type in ("qwen3", "gemma3_text"):
            modules |= {name: ck.norm(f"{p}.self_attn.{name}", eps) for name in ("q_norm", "k_norm")}
        sa = _Attention(**modules)
        sa.layer_type = layer_types[i] if model_type == "gemma3_text" else None
        sa.scaling = _scaling(cfg, model_type, i)
        sa.sliding_window = window if layer_types[i] == "sliding_attention" else None
        sa.attn_logit_softcapping = cfg.get("attn_logit_softcapping") if model_type == "gemma2" else None
        layer = nn.Module()
        layer.self_attn = sa
        mlp = f"{p}.mlp"
        layer.mlp = _GatedMLP(
            ck.linear(f"{mlp}.gate_proj"), ck.linear(f"{mlp}.up_proj"), ck.linear(f"{mlp}.down_proj"), act
        )
        names = ["input_layernorm", "post_attention_layernorm"]
        names += ["pre_feedforward_layernorm", "post_feedforward_layernorm"] if gemma else []
        for name in names:
            setattr(layer, name, ck.norm(f"{p}.{name}", eps))
        layers.append(layer)
    body = nn.Module()
    body.embed_tokens = _Embedding(ck.get("model.embed_tokens.weight"), cfg["hidden_size"] ** 0.5 if gemma else None)
    body.layers = layers
    body.norm = ck.norm("model.norm", eps)
    body.rotary_emb = _Rotary(tables)
    head = _lm_head(cfg, ck, body.embed_tokens)
    return NativeModel(SimpleNamespace(**cfg), head, "model.embed_tokens", "model", body)


def _gpt2(cfg: dict[str, Any], ck: _Checkpoint) -> NativeModel:
    eps = float(cfg.get("layer_norm_epsilon", 1e-5))
    pre = "transformer." if ck.has("transformer.wte.weight") else ""
    act = _activation(cfg.get("activation_function", "gelu_new"))

    def conv(key: str) -> _Conv1D:
        return _Conv1D(ck.get(f"{key}.weight"), ck.get(f"{key}.bias"))

    blocks = nn.ModuleList()
    for i in range(int(cfg["n_layer"])):
        p = f"{pre}h.{i}"
        block = nn.Module()
        block.ln_1 = ck.norm(f"{p}.ln_1", eps)
        block.ln_2 = ck.norm(f"{p}.ln_2", eps)
        block.attn = _Attention(c_attn=conv(f"{p}.attn.c_attn"), c_proj=conv(f"{p}.attn.c_proj"))
        block.attn.scaling = _scaling(cfg, "gpt2", i)
        block.mlp = _GPT2MLP(conv(f"{p}.mlp.c_fc"), conv(f"{p}.mlp.c_proj"), act)
        blocks.append(block)
    body = nn.Module()
    body.wte = _Embedding(ck.get(f"{pre}wte.weight"))
    body.wpe = _Embedding(ck.get(f"{pre}wpe.weight"))
    body.h = blocks
    body.ln_f = ck.norm(f"{pre}ln_f", eps)
    return NativeModel(SimpleNamespace(**cfg), _lm_head(cfg, ck, body.wte), "transformer.wte", "transformer", body)


def _lm_head(cfg: dict[str, Any], ck: _Checkpoint, embed: nn.Module) -> nn.Module:
    tied = cfg.get("tie_word_embeddings", not ck.has("lm_head.weight"))
    if tied or not ck.has("lm_head.weight"):
        assert isinstance(embed.weight, nn.Parameter)
        return _TiedHead(embed.weight)
    return _Linear(ck.get("lm_head.weight"), ck.maybe("lm_head.bias"))


# ----------------------------------------------------------------------------------------------- entry point


def load_native(
    ref: str | Path, *, device: torch.device, dtype: torch.dtype, tokenizer: PendingTokenizer | None = None
) -> tuple[NativeModel, Any, str] | None:
    """(model, tokenizer, name) from a local model folder, or None when its weights need transformers. The
    tokenizer is the one `tokenizer` (a helper process started earlier) loaded, else a FileTokenizer where
    tokenizer.json is the whole story, else transformers' own."""
    folder = Path(ref)
    if not (folder.is_dir() and (folder / "config.json").exists() and (folder / "tokenizer.json").exists()):
        _without(tokenizer)
        return None
    try:
        cfg = _config(folder)
        model_type = str(cfg.get("model_type", ""))
        try:
            architecture_of_type(model_type)
        except ValueError as e:
            raise Unsupported(str(e)) from None
        ck = _Checkpoint(folder, dtype, device)
        model = _gpt2(cfg, ck) if model_type == "gpt2" else _decoder(cfg, model_type, ck)
    except Unsupported:
        _without(tokenizer)
        return None
    model.eval()
    name = folder.name if folder.name != "model" else folder.parent.name
    loaded = tokenizer.result() if tokenizer is not None else None
    if loaded is not None:
        return model, loaded, name
    try:
        return model, FileTokenizer(folder, model_type), name
    except Unsupported:
        from circuitboard.engine.loading import load_tokenizer

        return model, load_tokenizer(folder), name


def _without(tokenizer: PendingTokenizer | None) -> None:
    """No native load: the caller loads model and tokenizer through transformers, so the helper can stop."""
    if tokenizer is not None:
        tokenizer.cancel()
