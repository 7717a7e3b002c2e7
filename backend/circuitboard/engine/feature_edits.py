"""Edits of transcoder feature activations, run two ways, reading the logits of the last position.

- `replacement_readout`: the replacement model of the prompt (frozen attention patterns and norm
  denominators, error terms held at the clean run's, features live through their activation function): the
  model the attribution graph linearises, so with features in their linear range its effects are the graph's.
- `model_readout`: the model itself (attention, norms and MLPs live); each edited feature's change × its
  decoder rows is added to `mlp.hook_out` of every layer it writes to, activations read live from
  `mlp.hook_in` (as `circuitboard.engine.interventions` does for one feature at a time).

An edit pins features (layer, position, index) to a factor × their clean activation, and may zero every other
feature (BOS excepted: its features are never graph nodes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from circuitboard.engine.adapters import Adapter, mlp_io_modules
from circuitboard.engine.replacement import PromptContext, final_logits, frozen_attention_step
from circuitboard.engine.transcoders import TranscoderSet

Coord = tuple[int, int, int]  # (layer, position, feature index)


@dataclass
class FeatureEdits:
    pinned: list[Coord] = field(default_factory=list)
    factors: list[float] = field(default_factory=list)  # pinned[i] is set to factors[i] × its clean activation
    ablate_others: bool = False  # zero every feature that is neither pinned nor kept
    keep: list[Coord] = field(default_factory=list)  # left live when ablate_others

    def apply(self, layer: int, live: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """The edited activations [P, d_t] of `layer`, from its live and clean activations."""
        new = live.clone()
        P = live.shape[0]
        if self.ablate_others:
            mask = torch.zeros_like(live, dtype=torch.bool)
            mask[0] = True
            for c in self.keep + self.pinned:
                if c[0] == layer and c[1] < P:
                    mask[c[1], c[2]] = True
            new = new * mask
        for (lay, pos, idx), f in zip(self.pinned, self.factors, strict=True):
            if lay == layer and pos < P:
                new[pos, idx] = f * clean[pos, idx]
        return new


@dataclass
class Readout:
    """The last position's logits: demeaned, before any soft-cap (a logit node's value), and probabilities."""

    logits: torch.Tensor  # [vocab]
    probs: torch.Tensor  # [vocab]


def decoder_writes(tset: TranscoderSet, layer: int, delta: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """(output layer, [P, d]) that activation changes `delta` [P, d_t] of `layer` add to `mlp.hook_out`."""
    pos, idx = delta.nonzero(as_tuple=True)
    if len(idx) == 0:
        return []
    rows = tset.decoder_rows(layer, idx)  # [n, n_out, d]
    out = []
    for k, out_layer in enumerate(tset.output_layers(layer)):
        w = torch.zeros(delta.shape[0], rows.shape[-1], dtype=rows.dtype, device=rows.device)
        w.index_add_(0, pos, delta[pos, idx, None] * rows[:, k])
        out.append((out_layer, w))
    return out


@torch.no_grad()
def replacement_readout(adapter: Adapter, tset: TranscoderSet, ctx: PromptContext, edits: FeatureEdits) -> Readout:
    x = ctx.embeddings
    pending = torch.zeros_like(ctx.mlp_out)
    for layer, block in enumerate(adapter.blocks):
        x, x_in = frozen_attention_step(block, ctx, layer, x)
        live = tset.encode(layer, x_in)
        live[0] = 0  # as the replacement model: BOS features are not nodes
        new = edits.apply(layer, live, ctx.acts[layer])
        for out_layer, w in decoder_writes(tset, layer, new - ctx.acts[layer]):
            pending[out_layer] += w
        y = ctx.mlp_out[layer] + pending[layer]
        skip = tset.skip(layer, x_in)
        if skip is not None and ctx.skip_out is not None:
            y = y - ctx.skip_out[layer] + skip
        x = x + y
    raw = final_logits(adapter, x[-1:], ctx.scale_final[-1:], softcap=False)[0]
    return _readout(adapter, raw)


def _readout(adapter: Adapter, raw: torch.Tensor) -> Readout:
    raw = raw.float()
    capped = torch.tanh(raw / adapter.softcap) * adapter.softcap if adapter.softcap else raw
    return Readout(logits=raw - raw.mean(), probs=capped.softmax(-1))


class _ModelHooks:
    """Forward hooks that apply `edits` on the model's own forward pass (batch row 0)."""

    def __init__(self, adapter: Adapter, tset: TranscoderSet, ctx: PromptContext, edits: FeatureEdits) -> None:
        self.tset, self.ctx, self.edits = tset, ctx, edits
        self.pending: dict[int, torch.Tensor] = {}
        self.handles = []
        for layer in range(adapter.n_layers):
            mod_in, mod_out = mlp_io_modules(adapter.model, layer)
            self.handles.append(mod_in.register_forward_hook(self._read(layer)))
            self.handles.append(mod_out.register_forward_hook(self._write(layer)))

    def _read(self, layer: int):
        def hook(_module: nn.Module, _args: object, output: torch.Tensor) -> None:
            live = self.tset.encode(layer, output[0])
            new = self.edits.apply(layer, live, self.ctx.acts[layer])
            for out_layer, w in decoder_writes(self.tset, layer, new - live):
                before = self.pending.get(out_layer)
                self.pending[out_layer] = w if before is None else before + w

        return hook

    def _write(self, layer: int):
        def hook(_module: nn.Module, _args: object, output: torch.Tensor) -> torch.Tensor:
            add = self.pending.pop(layer, None)
            return output if add is None else output + add.to(output.dtype)[None]

        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


@torch.no_grad()
def model_readout(adapter: Adapter, tset: TranscoderSet, ctx: PromptContext, edits: FeatureEdits) -> Readout:
    hooks = _ModelHooks(adapter, tset, ctx, edits)
    try:
        out = adapter.model(input_ids=ctx.input_ids[None], use_cache=False, logits_to_keep=1).logits[0, -1]
    finally:
        hooks.close()
    out = out.float()
    if adapter.softcap:  # the model's logits are soft-capped; a logit node's value is not
        out = torch.atanh((out / adapter.softcap).clamp(-1 + 1e-6, 1 - 1e-6)) * adapter.softcap
    return _readout(adapter, out)
