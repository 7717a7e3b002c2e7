"""Interventions: set, scale or zero transcoder features and watch the next-token distribution and text change.

The model runs as itself; at each layer we add (new − current activation) × decoder row to `mlp.hook_out`
for every intervened feature, the activation being read live from `mlp.hook_in` (so a feature downstream of
an intervention responds to it). With `freeze_attention`, the prompt's attention patterns stay those of the
clean run; generated tokens attend live.
"""

from __future__ import annotations

import torch

from circuitboard.engine import patterns as attn_patterns
from circuitboard.engine.adapters import Adapter, mlp_io_modules
from circuitboard.engine.transcoders import TranscoderSet
from circuitboard.engine.types import FeatureIntervention, InterventionRequest, InterventionResult, Outcome, TokenProb


class _Steering:
    """Forward hooks that apply the interventions on every forward pass of the model."""

    def __init__(self, adapter: Adapter, tset: TranscoderSet, interventions: list[FeatureIntervention]):
        self.tset, self.items = tset, interventions
        self.inputs: dict[int, torch.Tensor] = {}
        self.handles = []
        for layer in range(adapter.n_layers):
            mod_in, mod_out = mlp_io_modules(adapter.model, layer)
            self.handles.append(mod_in.register_forward_hook(self._save_input(layer)))
            self.handles.append(mod_out.register_forward_hook(self._steer(layer)))

    def _save_input(self, layer):
        def hook(module, args, output):
            self.inputs[layer] = output[0]

        return hook

    def _steer(self, layer):
        def hook(module, args, output):
            delta = None
            acts_cache: dict[int, torch.Tensor] = {}
            for item in self.items:
                if layer not in self.tset.output_layers(item.layer):
                    continue
                if item.layer not in acts_cache:
                    acts_cache[item.layer] = self.tset.encode(item.layer, self.inputs[item.layer])
                current = acts_cache[item.layer][:, item.feature]  # [P]
                new = {
                    "set": torch.full_like(current, item.value),
                    "scale": current * item.value,
                    "zero": torch.zeros_like(current),
                }[item.mode]
                change = new - current
                if item.position is not None:
                    mask = torch.zeros_like(change)
                    if item.position < len(change):
                        mask[item.position] = 1
                    change = change * mask
                row = self.tset.decoder_rows(item.layer, torch.tensor([item.feature]))[0, layer - item.layer]
                d = change[:, None] * row.to(output.dtype)
                delta = d if delta is None else delta + d
            return output if delta is None else output + delta[None]

        return hook

    def close(self):
        for h in self.handles:
            h.remove()


@torch.no_grad()
def capture_patterns(adapter: Adapter, input_ids: torch.Tensor) -> list[torch.Tensor]:
    """The model's own attention patterns [H, P, P] per layer on the prompt, from its forward pass (the run
    that generation then freezes)."""
    with attn_patterns.capturing() as store:
        adapter.model(input_ids=input_ids[None], use_cache=False, logits_to_keep=1)
    return [store[i] for i in range(adapter.n_layers)]


def _next_logits(model, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids[None], use_cache=False, logits_to_keep=1).logits[0, -1].float()


def _token_probs(tokenizer, probs: torch.Tensor, ids: list[int]) -> list[TokenProb]:
    values = probs[ids].tolist() if ids else []
    return [TokenProb(id=t, text=tokenizer.decode([t]), prob=float(q)) for t, q in zip(ids, values, strict=True)]


@torch.no_grad()
def _run(
    adapter: Adapter,
    tokenizer,
    ids: torch.Tensor,
    req: InterventionRequest,
    watch_ids: list[int],
    steering: _Steering | None,
    frozen: dict | None,
) -> Outcome:
    gen = torch.Generator(device="cpu").manual_seed(req.seed)
    model = adapter.model
    out_ids: list[int] = []
    top: list[TokenProb] = []
    watch: list[TokenProb] = []
    seq = ids
    with attn_patterns.frozen(frozen):
        for step in range(max(req.n_tokens, 1)):
            probs = _next_logits(model, seq).softmax(-1)
            if step == 0:
                # Top tokens and watched tokens come from the same next-token distribution.
                top = _token_probs(tokenizer, probs, probs.topk(req.top_k).indices.tolist())
                watch = _token_probs(tokenizer, probs, watch_ids)
            if step >= req.n_tokens:
                break
            if req.temperature > 0:
                weights = (probs.log() / req.temperature).softmax(-1).cpu()
                nxt = int(torch.multinomial(weights, 1, generator=gen))
            else:
                nxt = int(probs.argmax())
            out_ids.append(nxt)
            if nxt == tokenizer.eos_token_id:
                break
            seq = torch.cat([seq, torch.tensor([nxt], device=seq.device)])
    return Outcome(top=top, watch=watch, continuation=tokenizer.decode(out_ids), continuation_ids=out_ids)


def run_intervention(
    adapter: Adapter,
    tset: TranscoderSet,
    tokenizer,
    ids: torch.Tensor,
    req: InterventionRequest,
    watch_ids: list[int] | None = None,
) -> InterventionResult:
    """`watch_ids`: the token ids of `req.watch` (the caller's tokenizer resolves them)."""
    watch_ids = watch_ids or []
    for i, item in enumerate(req.interventions):
        if item.layer >= tset.n_layers:
            raise ValueError(f"interventions.{i}.layer: {item.layer} is not below {tset.n_layers}")
        if item.feature >= tset.d_transcoder:
            raise ValueError(f"interventions.{i}.feature: {item.feature} is not below {tset.d_transcoder}")
        if item.position is not None and item.position >= len(ids):
            raise ValueError(f"interventions.{i}.position: {item.position} is past the prompt ({len(ids)} tokens)")
    before = _run(adapter, tokenizer, ids, req, watch_ids, None, None)
    frozen = None
    if req.freeze_attention:
        frozen = dict(enumerate(capture_patterns(adapter, ids)))
    steering = _Steering(adapter, tset, req.interventions)
    try:
        after = _run(adapter, tokenizer, ids, req, watch_ids, steering, frozen)
    finally:
        steering.close()
    return InterventionResult(before=before, after=after)
