"""A tiny model with planted circuit structure, for the analysis tests (supernodes, validation, diff).

Two groups of transcoder features at one layer fire at the last position only, each member reading a noisy
copy of its group's direction and writing a noisy copy of one target logit's unembedding direction: two
parallel paths to two logits. With `linear_downstream`, two features at the next layer fire at every position
with a large bias (so they stay in ReLU's linear range under any of the tests' edits) and read the first group's
direction: the linear graph then predicts effects through them too. With `distractors`, the other layer's
features 8-15 keep random encoders and decoders (and fire where they happen to).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from circuitboard.devtools.tiny import build_tiny_model
from circuitboard.engine import patterns
from circuitboard.engine.adapters import get_adapter
from circuitboard.engine.replacement import build_context
from circuitboard.engine.session import Engine
from circuitboard.engine.transcoders import TranscoderSet, random_transcoder_set

PROMPT = "The capital of Texas is"
TARGETS = (" Texas", " capital")  # one token each in the tiny tokenizer
GROUP_SIZE = 4
DOWNSTREAM_READ = 0.25  # small enough that x-1 (twice the ablation) keeps them above 0
NOISE = 1.0  # |noise| relative to the unit direction: members are far from identical


@dataclass
class Planted:
    engine: Engine
    group_layer: int
    groups: list[list[int]]  # feature indices of group A (-> TARGETS[0]) and group B (-> TARGETS[1])
    downstream: list[int]  # linear features at group_layer + 1


def planted_engine(
    group_layer: int = 0, linear_downstream: bool = False, distractors: bool = False, seed: int = 0
) -> Planted:
    model, tok = build_tiny_model("llama", seed=0, n_layers=2, d_model=64)
    patterns.use_pattern_attention(model)
    adapter = get_adapter(model)
    tset = random_transcoder_set(2, 64, 16, seed=seed, density=0.3)
    for layer, lw in enumerate(tset.layers):  # every feature dead unless planted below (or a distractor)
        lw.b_enc[: 2 * GROUP_SIZE if distractors and layer != group_layer else None] = -1e4
        lw.b_dec.zero_()
    ids = tok(PROMPT, return_tensors="pt").input_ids[0]
    # The MLP inputs come from the model alone (transcoders only decompose its MLPs), so they can be read first.
    x = build_context(adapter, tset, ids).mlp_in[group_layer]
    g = torch.Generator().manual_seed(seed + 1)
    W_U = adapter.W_U
    groups = [list(range(GROUP_SIZE)), list(range(GROUP_SIZE, 2 * GROUP_SIZE))]
    reads = [x[-1] - x[1:-1].mean(0), x[-1] - x[-2]]
    for k, (members, token) in enumerate(zip(groups, TARGETS, strict=True)):
        tid = tok(token, add_special_tokens=False).input_ids[0]
        write = W_U[tid] - W_U.mean(0)
        for j, f in enumerate(members):
            _plant_last_position(tset, group_layer, f, x, _noisy(reads[k], 0.3, g), 1.5 + 0.25 * j)
            tset.layers[group_layer].W_dec[f] = 3.0 * _noisy(write, NOISE, g)  # type: ignore[index]
    downstream: list[int] = []
    if linear_downstream:
        downstream = [0, 1]
        up = tset.layers[group_layer].W_dec[groups[0]].mean(0)  # type: ignore[index]
        for f in downstream:
            lw = tset.layers[group_layer + 1]
            lw.W_enc[f] = DOWNSTREAM_READ * _noisy(up, 0.2, g)
            lw.b_enc[f] = 20.0
            lw.W_dec[f] = 0.5 * _noisy(W_U[tid] - W_U.mean(0), 0.5, g)  # type: ignore[index]
    engine = Engine(model, tok, tset, model_name="planted")
    return Planted(engine, group_layer, groups, downstream)


def _noisy(direction: torch.Tensor, noise: float, g: torch.Generator) -> torch.Tensor:
    unit = direction / direction.norm()
    n = torch.randn(unit.shape, generator=g)
    return unit + noise * n / n.norm()


def _plant_last_position(
    tset: TranscoderSet, layer: int, f: int, x: torch.Tensor, read: torch.Tensor, act: float
) -> None:
    """Encoder row and bias so that feature f's pre-activation is `act` at the last position and at most −act
    at every other (non-BOS) position."""
    dots = x @ read
    last, other = float(dots[-1]), float(dots[1:-1].max())
    assert last > other, "the planted read direction does not single out the last position"
    scale = 2 * act / (last - other)
    tset.layers[layer].W_enc[f] = scale * read
    tset.layers[layer].b_enc[f] = -scale * (last + other) / 2
