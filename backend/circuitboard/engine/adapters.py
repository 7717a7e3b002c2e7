"""Per-architecture access to the pieces of a decoder-only transformer that attribution needs.

The engine runs its own forward pass over the model's weights, so each architecture only has to say where its
embeddings, norms, projections, MLP and unembedding live, and how its attention pattern is formed: scaling,
rotary tables, qk-norms, sliding window and logit soft-cap are read off the model's own attention modules and
rotary embedding (so every rope type transformers builds gives the same tables), and `Attention.pattern`
applies them as transformers' eager attention does. The pattern is thus computed in the same pass that records
the MLP inputs, instead of a second forward through the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeAlias

import torch
from torch import nn

SUPPORTED_ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma2", "gemma3", "gpt2")

# A transformers *ForCausalLM. Its submodules and config fields are dynamic attributes (`nn.Module.__getattr__`,
# `PretrainedConfig`), different per architecture, which no static type describes: this module is the one
# place that knows them, and everything it hands out (Norm, Attention, Block, modules) is typed.
HFModel: TypeAlias = Any


@dataclass(frozen=True)
class Norm:
    """A normalisation `y = (x - [mean x]) * s * weight + bias`, with `s = 1/sqrt(E[x^2 or var] + eps)`.

    `weight` already includes Gemma's `1 + w` offset. `centered` marks LayerNorm (GPT-2).
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    eps: float
    centered: bool

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """The denominator 1/rms (or 1/std), per position: the quantity attribution freezes."""
        xf = x.float()
        if self.centered:
            var = xf.var(-1, keepdim=True, unbiased=False)
        else:
            var = xf.pow(2).mean(-1, keepdim=True)
        return torch.rsqrt(var + self.eps).to(x.dtype)

    def apply(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """The norm with a given (possibly frozen) scale; linear in x when the scale is fixed."""
        if self.centered:
            x = x - x.mean(-1, keepdim=True)
        y = x * scale * self.weight
        return y + self.bias if self.bias is not None else y

    def backward(self, g: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Transpose of `apply` with frozen scale, for gradients g [..., d]."""
        g = (g * self.weight).mul_(scale)  # one temporary, the same products in the same order
        if self.centered:
            g = g - g.mean(-1, keepdim=True)
        return g

    # With the scale frozen, `backward` is diag(weight) · C (C = I − 11ᵀ/d when centered, else I) times a scalar per
    # position. The row loop folds the matrix part into the weights it multiplies anyway, once per prompt, and
    # leaves only the scalars (which commute with any per-position linear map).
    def backward_then(self, W: torch.Tensor) -> torch.Tensor:
        """M [d, k] with backward(g, s) @ W == s · (g @ M), for W [d, k]."""
        if self.centered:
            W = W - W.mean(0, keepdim=True)
        return self.weight[:, None] * W

    def after_backward(self, W: torch.Tensor) -> torch.Tensor:
        """M [k, d] with backward(x @ W, s) == s · (x @ M), for W [k, d]."""
        M = W * self.weight
        return M - M.mean(-1, keepdim=True) if self.centered else M


@dataclass(frozen=True)
class Rope:
    """Rotary position embedding of one layer: the inverse frequencies [head_dim / 2] (fp32) and cos/sin scale."""

    inv_freq: torch.Tensor
    attention_scaling: float

    def cos_sin(self, n_pos: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [P, head_dim] for positions 0..P-1, computed in fp32 and cast (as transformers does)."""
        pos = torch.arange(n_pos, device=self.inv_freq.device, dtype=torch.float32)
        freqs = pos[:, None] * self.inv_freq.float()[None]
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * self.attention_scaling).to(dtype), (emb.sin() * self.attention_scaling).to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


@dataclass(frozen=True)
class Attention:
    """One attention layer: queries and keys form the pattern, which attribution freezes; values and the output
    projection are the linear path the pattern mixes."""

    W_q: torch.Tensor  # [n_heads * head_dim, d_model]; q = x @ W_q.T + b_q
    b_q: torch.Tensor | None
    W_k: torch.Tensor  # [n_kv_heads * head_dim, d_model]
    b_k: torch.Tensor | None
    W_v: torch.Tensor  # [n_kv_heads * head_dim, d_model]; v = x @ W_v.T + b_v
    b_v: torch.Tensor | None
    W_o: torch.Tensor  # [d_model, n_heads * head_dim]; out = z @ W_o.T + b_o
    b_o: torch.Tensor | None
    n_heads: int
    n_kv_heads: int
    head_dim: int
    scaling: float  # multiplies q·k (1/sqrt(head_dim), Gemma's query_pre_attn_scalar, GPT-2's layer scaling)
    rope: Rope | None  # None: positions enter through learned embeddings (GPT-2)
    q_norm: Norm | None  # per-head RMS norm of queries and keys (Qwen3, Gemma 3)
    k_norm: Norm | None
    sliding_window: int | None  # a query sees the keys q - k < window (transformers' sliding mask)
    softcap: float | None  # Gemma 2's attention logit soft-cap

    def pattern(self, x_normed: torch.Tensor) -> torch.Tensor:
        """The attention pattern [H, P, P] of the normalised residual x_normed [P, d]: transformers' eager
        attention, same operations in the same order (projection, qk-norm, rotary, scaled scores, soft-cap,
        causal and sliding mask, softmax in fp32)."""
        P = x_normed.shape[0]
        q = _project(x_normed, self.W_q, self.b_q).view(P, self.n_heads, self.head_dim).transpose(0, 1)
        k = _project(x_normed, self.W_k, self.b_k).view(P, self.n_kv_heads, self.head_dim).transpose(0, 1)
        if self.q_norm is not None and self.k_norm is not None:
            q = self.q_norm.apply(q, self.q_norm.scale(q))
            k = self.k_norm.apply(k, self.k_norm.scale(k))
        if self.rope is not None:
            cos, sin = self.rope.cos_sin(P, q.dtype)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
        group = self.n_heads // self.n_kv_heads
        if group > 1:
            k = k.repeat_interleave(group, dim=0)
        scores = (q @ k.transpose(1, 2)) * self.scaling
        if self.softcap is not None:
            scores = torch.tanh(scores / self.softcap) * self.softcap
        i = torch.arange(P, device=scores.device)
        masked = i[None, :] > i[:, None]  # keys after the query
        if self.sliding_window is not None:
            masked |= i[None, :] <= i[:, None] - self.sliding_window
        scores = scores.masked_fill(masked, float("-inf"))
        return scores.softmax(-1, dtype=torch.float32).to(q.dtype)


def _project(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return x @ W.T if b is None else torch.addmm(b, x, W.T)


@dataclass(frozen=True)
class Block:
    attn_in: Norm
    attn: Attention
    attn_out: Norm | None  # Gemma's post-attention norm
    mlp_in: Norm
    mlp: nn.Module  # maps the normalised MLP input to the MLP output
    mlp_out: Norm | None  # Gemma's post-feedforward norm (part of `mlp.hook_out`)


@dataclass(frozen=True)
class Adapter:
    architecture: str
    model: HFModel
    blocks: list[Block]
    final_norm: Norm
    W_U: torch.Tensor  # [vocab, d_model]
    b_U: torch.Tensor | None
    softcap: float | None
    d_model: int
    vocab_size: int

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @cached_property
    def unembed_mean(self) -> torch.Tensor:
        """The mean unembedding row [1, d_model]: a logit node is logit − mean logit, so it reads W_U[t] minus
        this. Once per loaded model (Gemma 3's 262,144 × 640 takes 70-80 ms to sum, every trace otherwise)."""
        return self.W_U.mean(0, keepdim=True)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Residual stream entering layer 0 for ids [P] → [P, d] (scaled / positional embeddings included)."""
        return _embed(self, input_ids)

    def mlp_block(self, layer: int, x_in: torch.Tensor) -> torch.Tensor:
        """`mlp.hook_out` from `mlp.hook_in`: the MLP and, for Gemma, its post-feedforward norm."""
        block = self.blocks[layer]
        y = block.mlp(x_in)
        if block.mlp_out is not None:
            y = block.mlp_out.apply(y, block.mlp_out.scale(y))
        return y


def architecture_of(model: HFModel) -> str:
    model_type = getattr(model.config, "model_type", "")
    return architecture_of_type(model_type)


def architecture_of_type(model_type: str) -> str:
    """Our architecture name for a config's `model_type` (ValueError for one we cannot trace)."""
    aliases = {
        "gemma3_text": "gemma3",
        "gemma3": "gemma3",
        "llama": "llama",
        "mistral": "llama",
        "qwen2": "qwen2",
        "qwen3": "qwen3",
        "gemma2": "gemma2",
        "gpt2": "gpt2",
    }
    if model_type not in aliases:
        raise ValueError(f"unsupported architecture {model_type!r}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
    return aliases[model_type]


def get_adapter(model: HFModel) -> Adapter:
    arch = architecture_of(model)
    return _gpt2_adapter(model) if arch == "gpt2" else _decoder_adapter(model, arch)


def mlp_io_modules(model: HFModel, layer: int) -> tuple[nn.Module, nn.Module]:
    """Modules whose outputs are `mlp.hook_in` (normalised MLP input) and `mlp.hook_out` (MLP contribution)."""
    arch = architecture_of(model)
    block = decoder_layers(model)[layer]
    if arch == "gpt2":
        return block.ln_2, block.mlp
    if arch in ("gemma2", "gemma3"):
        return block.pre_feedforward_layernorm, block.post_feedforward_layernorm
    return block.post_attention_layernorm, block.mlp


def body(model: HFModel) -> nn.Module:
    """The transformer without its output head: a forward pass that only needs the layers runs this."""
    return model.transformer if architecture_of(model) == "gpt2" else model.model


def decoder_layers(model: HFModel) -> list[HFModel]:
    """The model's transformer blocks, layer 0 first."""
    return list(model.transformer.h if architecture_of(model) == "gpt2" else model.model.layers)


def _rms(module: HFModel, gemma: bool) -> Norm:
    w = module.weight.detach()
    eps = getattr(module, "eps", None) or getattr(module, "variance_epsilon", None) or 1e-6
    return Norm(weight=(1.0 + w.float()).to(w.dtype) if gemma else w, bias=None, eps=float(eps), centered=False)


def _layernorm(module: nn.LayerNorm) -> Norm:
    return Norm(weight=module.weight.detach(), bias=module.bias.detach(), eps=float(module.eps), centered=True)


def _maybe(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach()


def _rope(model: HFModel, layer: HFModel) -> Rope:
    """The rotary table transformers built for this layer (per layer type for Gemma 3)."""
    rotary: HFModel = body(model).rotary_emb
    layer_type = getattr(layer.self_attn, "layer_type", None) or getattr(layer, "attention_type", None)
    rope_type = getattr(rotary, "rope_type", "default")
    rope_type = rope_type.get(layer_type, "default") if isinstance(rope_type, dict) else rope_type
    if rope_type in ("dynamic", "longrope"):
        # Their tables change with the sequence length; a frozen pattern would need the model's own forward.
        raise ValueError(f"unsupported rope type {rope_type!r}")
    inv_freq = getattr(rotary, f"{layer_type}_inv_freq", None) if layer_type else None
    if inv_freq is None:
        return Rope(inv_freq=rotary.inv_freq.float(), attention_scaling=float(rotary.attention_scaling))
    return Rope(inv_freq=inv_freq.float(), attention_scaling=float(getattr(rotary, f"{layer_type}_attention_scaling")))


def _sliding_window(model: HFModel, sa: HFModel) -> int | None:
    if getattr(model.config, "model_type", "") == "mistral":  # one window on every layer, read from the config
        return getattr(model.config, "sliding_window", None)
    return getattr(sa, "sliding_window", None)


def _decoder_adapter(model: HFModel, arch: str) -> Adapter:
    cfg = model.config
    gemma = arch in ("gemma2", "gemma3")
    if getattr(cfg, "use_bidirectional_attention", False):
        raise ValueError("bidirectional attention is not a causal language model")
    blocks = []
    for layer in decoder_layers(model):
        sa = layer.self_attn
        n_heads = cfg.num_attention_heads
        n_kv = getattr(cfg, "num_key_value_heads", None) or n_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
        q_norm = getattr(sa, "q_norm", None)
        k_norm = getattr(sa, "k_norm", None)
        attn = Attention(
            W_q=sa.q_proj.weight.detach(),
            b_q=_maybe(sa.q_proj.bias),
            W_k=sa.k_proj.weight.detach(),
            b_k=_maybe(sa.k_proj.bias),
            W_v=sa.v_proj.weight.detach(),
            b_v=_maybe(sa.v_proj.bias),
            W_o=sa.o_proj.weight.detach(),
            b_o=_maybe(sa.o_proj.bias),
            n_heads=n_heads,
            n_kv_heads=n_kv,
            head_dim=head_dim,
            scaling=float(sa.scaling),
            rope=_rope(model, layer),
            q_norm=_rms(q_norm, gemma) if q_norm is not None else None,
            k_norm=_rms(k_norm, gemma) if k_norm is not None else None,
            sliding_window=_sliding_window(model, sa),
            # Gemma 3's attention takes no soft-cap even where its config names one (transformers passes none).
            softcap=getattr(sa, "attn_logit_softcapping", None) if arch == "gemma2" else None,
        )
        if gemma:
            blocks.append(
                Block(
                    _rms(layer.input_layernorm, True),
                    attn,
                    _rms(layer.post_attention_layernorm, True),
                    _rms(layer.pre_feedforward_layernorm, True),
                    layer.mlp,
                    _rms(layer.post_feedforward_layernorm, True),
                )
            )
        else:
            blocks.append(
                Block(
                    _rms(layer.input_layernorm, False),
                    attn,
                    None,
                    _rms(layer.post_attention_layernorm, False),
                    layer.mlp,
                    None,
                )
            )
    lm_head = model.get_output_embeddings()
    return Adapter(
        architecture=arch,
        model=model,
        blocks=blocks,
        final_norm=_rms(model.model.norm, gemma),
        W_U=lm_head.weight.detach(),
        b_U=_maybe(lm_head.bias),
        d_model=cfg.hidden_size,
        softcap=getattr(cfg, "final_logit_softcapping", None),
        vocab_size=lm_head.weight.shape[0],
    )


def _gpt2_adapter(model: HFModel) -> Adapter:
    cfg = model.config
    d = cfg.n_embd
    n_heads = cfg.n_head
    blocks = []
    for block in decoder_layers(model):
        # Conv1D stores weight [in, out] and computes x @ W + b; c_attn packs q, k, v along the output.
        W = block.attn.c_attn.weight.detach()
        b = block.attn.c_attn.bias.detach()
        attn = Attention(
            W_q=W[:, :d].T.contiguous(),
            b_q=b[:d],
            W_k=W[:, d : 2 * d].T.contiguous(),
            b_k=b[d : 2 * d],
            W_v=W[:, 2 * d :].T.contiguous(),
            b_v=b[2 * d :],
            W_o=block.attn.c_proj.weight.detach().T.contiguous(),
            b_o=block.attn.c_proj.bias.detach(),
            n_heads=n_heads,
            n_kv_heads=n_heads,
            head_dim=d // n_heads,
            scaling=float(block.attn.scaling),
            rope=None,
            q_norm=None,
            k_norm=None,
            sliding_window=None,
            softcap=None,
        )
        blocks.append(Block(_layernorm(block.ln_1), attn, None, _layernorm(block.ln_2), block.mlp, None))
    lm_head = model.get_output_embeddings()
    return Adapter(
        architecture="gpt2",
        model=model,
        blocks=blocks,
        final_norm=_layernorm(model.transformer.ln_f),
        W_U=lm_head.weight.detach(),
        b_U=_maybe(lm_head.bias),
        softcap=None,
        d_model=d,
        vocab_size=lm_head.weight.shape[0],
    )


def _embed(adapter: Adapter, input_ids: torch.Tensor) -> torch.Tensor:
    model = adapter.model
    if adapter.architecture == "gpt2":
        pos = torch.arange(input_ids.shape[-1], device=input_ids.device)
        return model.transformer.wte(input_ids) + model.transformer.wpe(pos)
    # Gemma's scaled embedding module multiplies by sqrt(d_model) itself.
    return model.get_input_embeddings()(input_ids)
