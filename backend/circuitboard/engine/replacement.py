"""The replacement model of one prompt: transcoder features + error terms, frozen attention and norms.

Given the prompt, we record everything the linearisation freezes — attention patterns and every norm's
denominator — plus the transcoder activations and error terms (true MLP output − reconstruction). With those
fixed, the map from (embeddings, feature activations, errors) to feature pre-activations and demeaned logits
is linear; `frozen_forward` evaluates it directly (used to check attribution by perturbation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from circuitboard.engine.adapters import Adapter, Attention, Block
from circuitboard.engine.transcoders import TranscoderSet


@dataclass
class PromptContext:
    input_ids: torch.Tensor  # [P]
    patterns: list[torch.Tensor]  # per layer [H, P, P]
    embeddings: torch.Tensor  # [P, d]: resid entering layer 0
    resid_mid: torch.Tensor  # [L, P, d]: after attention, before the MLP
    resid_final: torch.Tensor  # [P, d]: after the last layer
    scale_attn_in: torch.Tensor  # [L, P, 1]
    scale_attn_out: torch.Tensor | None  # [L, P, 1] (Gemma post-attention norm)
    scale_mlp_in: torch.Tensor  # [L, P, 1]
    scale_final: torch.Tensor  # [P, 1]
    mlp_in: torch.Tensor  # [L, P, d]  (`mlp.hook_in`)
    mlp_out: torch.Tensor  # [L, P, d]  (`mlp.hook_out`)
    logits: torch.Tensor  # [P or 1, vocab] after any soft-cap: the model's own logits (last row = last position)
    acts: list[torch.Tensor]  # per layer [P, d_t]: transcoder activations (position 0 zeroed)
    errors: torch.Tensor  # [L, P, d]
    skip_out: torch.Tensor | None  # [L, P, d]: the skip connection's share of the replacement MLP output

    @property
    def n_pos(self) -> int:
        return int(self.input_ids.shape[0])


def attention_out(attn: Attention, x_normed: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """Frozen-pattern attention for x_normed [P, d] (or [B, P, d]) and pattern [H, P, P]."""
    *lead, P, _ = x_normed.shape
    v = x_normed @ attn.W_v.T
    if attn.b_v is not None:
        v = v + attn.b_v
    v = v.view(*lead, P, attn.n_kv_heads, attn.head_dim)
    group = attn.n_heads // attn.n_kv_heads
    v = v.repeat_interleave(group, dim=-2) if group > 1 else v  # [.., P, H, hd]
    z = torch.einsum("hij,...jhd->...ihd", pattern, v).reshape(*lead, P, attn.n_heads * attn.head_dim)
    out = z @ attn.W_o.T
    return out + attn.b_o if attn.b_o is not None else out


def final_logits(adapter: Adapter, resid: torch.Tensor, scale: torch.Tensor, softcap: bool = True) -> torch.Tensor:
    logits = adapter.final_norm.apply(resid, scale) @ adapter.W_U.T
    if adapter.b_U is not None:
        logits = logits + adapter.b_U
    if softcap and adapter.softcap:
        logits = torch.tanh(logits / adapter.softcap) * adapter.softcap
    return logits


@torch.no_grad()
def build_context(
    adapter: Adapter,
    tset: TranscoderSet,
    input_ids: torch.Tensor,
    zero_first_pos: bool = True,
    all_logits: bool = False,
    errors: bool = True,
) -> PromptContext:
    """Run the model once (our own forward on its weights, each layer's pattern formed as its attention forms it)
    and record it all.

    `errors=False` leaves `errors` empty: attribution's source table computes them from the decoder rows it
    reads anyway (sources.SourceTable), so that a trace reads each decoder row once."""
    input_ids = input_ids.to(adapter.W_U.device)
    x = adapter.embed(input_ids)
    emb = x.clone()
    L = adapter.n_layers
    rec: dict[str, list[torch.Tensor]] = {k: [] for k in ("s_in", "s_out", "s_mlp", "mid", "mlp_in", "mlp_out")}
    pats: list[torch.Tensor] = []
    for layer, block in enumerate(adapter.blocks):
        s_in = block.attn_in.scale(x)
        x_normed = block.attn_in.apply(x, s_in)
        pats.append(block.attn.pattern(x_normed))
        a = attention_out(block.attn, x_normed, pats[layer])
        if block.attn_out is not None:
            s_out = block.attn_out.scale(a)
            a = block.attn_out.apply(a, s_out)
            rec["s_out"].append(s_out)
        x = x + a
        s_mlp = block.mlp_in.scale(x)
        x_in = block.mlp_in.apply(x, s_mlp)
        y = adapter.mlp_block(layer, x_in)
        for key, value in (("s_in", s_in), ("s_mlp", s_mlp), ("mid", x), ("mlp_in", x_in), ("mlp_out", y)):
            rec[key].append(value)
        x = x + y
    s_final = adapter.final_norm.scale(x)
    # Targets only need the last position; a 262k-token vocabulary makes every other row costly.
    logits = final_logits(adapter, x if all_logits else x[-1:], s_final if all_logits else s_final[-1:])

    mlp_in = torch.stack(rec["mlp_in"])
    mlp_out = torch.stack(rec["mlp_out"])
    acts = []
    for layer in range(L):
        a = tset.encode(layer, mlp_in[layer])
        if zero_first_pos:
            # Position 0 (BOS) carries huge-norm, uninformative features; its MLP output goes to the error node.
            a[0] = 0
        acts.append(a)
    skip_out = torch.stack([_skip(tset, layer, mlp_in[layer]) for layer in range(L)]) if tset.has_skip else None
    if errors:
        recon = torch.stack([tset.decode(layer, acts, mlp_in[layer]) for layer in range(L)])
    return PromptContext(
        input_ids=input_ids,
        patterns=pats,
        embeddings=emb,
        resid_mid=torch.stack(rec["mid"]),
        resid_final=x,
        scale_attn_in=torch.stack(rec["s_in"]),
        scale_attn_out=torch.stack(rec["s_out"]) if rec["s_out"] else None,
        scale_mlp_in=torch.stack(rec["s_mlp"]),
        scale_final=s_final,
        mlp_in=mlp_in,
        mlp_out=mlp_out,
        logits=logits,
        acts=acts,
        errors=mlp_out - recon if errors else mlp_out.new_zeros(0),
        skip_out=skip_out,
    )


def _skip(tset: TranscoderSet, layer: int, x_in: torch.Tensor) -> torch.Tensor:
    """The skip path's output; only called for sets that have one."""
    out = tset.skip(layer, x_in)
    assert out is not None
    return out


@dataclass
class FrozenOutputs:
    pre_acts: list[torch.Tensor]  # per layer [P, d_t]: transcoder pre-activations
    logits: torch.Tensor  # [P, vocab]: logits minus their mean, before any soft-cap


def frozen_attention_step(
    block: Block, ctx: PromptContext, layer: int, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's attention half with the prompt's patterns and norm scales frozen: the residual after
    attention and the MLP's (normalised) input."""
    a = attention_out(block.attn, block.attn_in.apply(x, ctx.scale_attn_in[layer]), ctx.patterns[layer])
    if block.attn_out is not None:
        assert ctx.scale_attn_out is not None  # recorded for every model whose blocks have this norm
        a = block.attn_out.apply(a, ctx.scale_attn_out[layer])
    x = x + a
    return x, block.mlp_in.apply(x, ctx.scale_mlp_in[layer])


@torch.no_grad()
def frozen_forward(
    adapter: Adapter,
    tset: TranscoderSet,
    ctx: PromptContext,
    *,
    embeddings: torch.Tensor | None = None,
    mlp_add: torch.Tensor | None = None,
) -> FrozenOutputs:
    """The linearised model: frozen patterns and norm scales, MLP outputs = fixed features + errors + live skip.

    `embeddings` replaces the layer-0 input; `mlp_add` [L, P, d] is added to each layer's MLP output
    (how a perturbed feature or error enters). Every output is affine in these inputs.
    """
    x = ctx.embeddings if embeddings is None else embeddings
    pre_acts = []
    for layer, block in enumerate(adapter.blocks):
        x, x_in = frozen_attention_step(block, ctx, layer, x)
        pre_acts.append(tset.pre_activations(layer, x_in))
        y = ctx.mlp_out[layer]
        if ctx.skip_out is not None:
            y = y - ctx.skip_out[layer] + _skip(tset, layer, x_in)
        if mlp_add is not None:
            y = y + mlp_add[layer]
        x = x + y
    logits = final_logits(adapter, x, ctx.scale_final, softcap=False)
    return FrozenOutputs(pre_acts=pre_acts, logits=logits - logits.mean(-1, keepdim=True))
