"""Transcoder sets: per-layer (PLT) and cross-layer (CLT) transcoders and their maths.

A transcoder reads `mlp.hook_in` of layer l (the normalised MLP input x) and writes `mlp.hook_out`:
    pre  = x @ W_enc.T + b_enc                  [d_t]
    a    = act(pre)                             ReLU | JumpReLU(threshold) | TopK(k) (top k, then ReLU)
    out  = a @ W_dec + b_dec + x @ W_skip.T     (CLT: layer l's output sums the decoders of all layers ≤ l)

The files (every layout, both directions) are `transcoder_files`; decoders can stay there, memory-mapped, so
RAM holds only the rows a prompt touches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from circuitboard.engine.transcoder_files import (
    PLT_HOOKS,
    DecoderFile,
    LayerTensors,
    read_transcoder_files,
    write_transcoder_set,
)


@dataclass
class Activation:
    kind: str = "relu"  # relu | jumprelu | topk
    threshold: torch.Tensor | None = None  # [d_t] for JumpReLU
    k: int | None = None  # for TopK

    def __call__(self, pre: torch.Tensor) -> torch.Tensor:
        if self.kind == "jumprelu":
            assert self.threshold is not None
            return pre * (pre > self.threshold)
        if self.kind == "topk":
            assert self.k is not None
            top = pre.topk(self.k, dim=-1)
            return torch.zeros_like(pre).scatter_(-1, top.indices, top.values.relu())
        return pre.relu()


@dataclass
class LayerWeights:
    """Encoder side of one layer (always in memory) plus where its decoder lives."""

    W_enc: torch.Tensor  # [d_t, d]
    b_enc: torch.Tensor  # [d_t]
    b_dec: torch.Tensor  # [d]
    activation: Activation
    W_skip: torch.Tensor | None = None  # [d, d]
    W_dec: torch.Tensor | None = None  # PLT [d_t, d] or CLT [d_t, L - l, d]; None while lazy
    decoder: DecoderFile | None = None  # the file W_dec's rows are read from while lazy

    @classmethod
    def from_stored(cls, t: LayerTensors) -> LayerWeights:
        act = Activation(t.activation, threshold=t.threshold, k=t.k)
        return cls(t.W_enc, t.b_enc, t.b_dec, act, W_skip=t.W_skip, W_dec=t.W_dec, decoder=t.decoder)

    def stored(self) -> LayerTensors:
        act = self.activation
        return LayerTensors(
            self.W_enc,
            self.b_enc,
            self.b_dec,
            W_dec=self.W_dec,
            W_skip=self.W_skip,
            threshold=act.threshold,
            k=act.k if act.kind == "topk" else None,
        )


@dataclass
class TranscoderSet:
    """Transcoders for layers 0..L-1. `cross_layer` sets write from layer l into every layer ≥ l."""

    layers: list[LayerWeights]
    cross_layer: bool = False
    feature_input_hook: str = PLT_HOOKS[0]
    feature_output_hook: str = PLT_HOOKS[1]
    name: str = "transcoders"
    model_name: str | None = None
    path: str | None = None

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def d_transcoder(self) -> int:
        return self.layers[0].W_enc.shape[0]

    @property
    def d_model(self) -> int:
        return self.layers[0].W_enc.shape[1]

    @property
    def has_skip(self) -> bool:
        return self.layers[0].W_skip is not None

    def to(self, device: torch.device | str, dtype: torch.dtype) -> TranscoderSet:
        for lw in self.layers:
            for name in ("W_enc", "b_enc", "b_dec", "W_skip", "W_dec"):
                t = getattr(lw, name)
                if t is not None:
                    setattr(lw, name, t.to(device=device, dtype=dtype))
            if lw.activation.threshold is not None:
                lw.activation.threshold = lw.activation.threshold.to(device=device, dtype=dtype)
        return self

    @property
    def device(self) -> torch.device:
        return self.layers[0].W_enc.device

    @property
    def dtype(self) -> torch.dtype:
        return self.layers[0].W_enc.dtype

    def pre_activations(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        lw = self.layers[layer]
        return x @ lw.W_enc.T + lw.b_enc

    def encode(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        return self.layers[layer].activation(self.pre_activations(layer, x))

    def skip(self, layer: int, x: torch.Tensor) -> torch.Tensor | None:
        W = self.layers[layer].W_skip
        return None if W is None else x @ W.T

    def output_layers(self, layer: int) -> range:
        """Layers whose `mlp.hook_out` a feature of `layer` writes to."""
        return range(layer, self.n_layers) if self.cross_layer else range(layer, layer + 1)

    def decoder_rows(self, layer: int, index: torch.Tensor) -> torch.Tensor:
        """Decoder vectors of features `index` of `layer`: [n, n_out_layers, d] (n_out_layers = 1 for a PLT)."""
        lw = self.layers[layer]
        if lw.W_dec is not None:
            rows = lw.W_dec[index]
        elif lw.decoder is not None:
            rows = lw.decoder.rows(index).to(device=self.device, dtype=self.dtype)
        else:
            raise ValueError(f"layer {layer} has neither a decoder in memory nor a file to read it from")
        return rows if self.cross_layer else rows[:, None, :]

    def decode(self, layer: int, acts_by_layer: list[torch.Tensor], x_in: torch.Tensor | None) -> torch.Tensor:
        """`mlp.hook_out` reconstruction of `layer` from dense activations of every layer ≤ layer ([P, d_t] each)."""
        out = self.layers[layer].b_dec.expand(acts_by_layer[layer].shape[0], -1).clone()
        for src in range(layer + 1) if self.cross_layer else (layer,):
            a = acts_by_layer[src]
            pos, idx = a.nonzero(as_tuple=True)
            if len(idx):
                vec = self.decoder_rows(src, idx)[:, layer - src]
                # A one-hot matmul scatters rows to positions far faster than index_add_ on CPU. Built in the
                # vectors' dtype directly: an int64 one_hot is [n, P] × 8 bytes (300 MB a layer at 1,024 tokens).
                onehot = vec.new_zeros(out.shape[0], len(pos)).scatter_(0, pos[None], 1.0)
                out += onehot @ (a[pos, idx, None] * vec)
        skip = self.skip(layer, x_in) if x_in is not None else None
        return out if skip is None else out + skip

    def materialize(self) -> TranscoderSet:
        """Read every lazy decoder into memory (for training or writing)."""
        for layer, lw in enumerate(self.layers):
            if lw.W_dec is None:
                rows = self.decoder_rows(layer, torch.arange(self.d_transcoder))
                lw.W_dec = rows if self.cross_layer else rows[:, 0]
        return self


# ---------------------------------------------------------------------------------------------- files


def load_transcoder_set(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    lazy_decoder: bool = True,
) -> TranscoderSet:
    """Load a transcoder set from a folder (any layout of `transcoder_files`) or its `config.yaml`."""
    stored = read_transcoder_files(path, lazy_decoder=lazy_decoder)
    tset = TranscoderSet(
        layers=[LayerWeights.from_stored(layer) for layer in stored.layers],
        cross_layer=stored.cross_layer,
        feature_input_hook=stored.feature_input_hook,
        feature_output_hook=stored.feature_output_hook,
        name=stored.name,
        model_name=stored.model_name,
        path=stored.path,
    )
    return tset.to(device, dtype)


def save_transcoder_set(
    tset: TranscoderSet, path: str | Path, *, model_name: str | None = None, extra_config: dict | None = None
) -> Path:
    """Write a set in circuit-tracer's layout (PLT `layer_{i}.safetensors` or CLT `W_enc_{i}`/`W_dec_{i}`)."""
    tset.materialize()
    return write_transcoder_set(
        path,
        [lw.stored() for lw in tset.layers],
        cross_layer=tset.cross_layer,
        model_name=model_name or tset.model_name or "",
        scan=tset.name,
        hooks=(tset.feature_input_hook, tset.feature_output_hook),
        extra_config=extra_config,
    )


def random_transcoder_set(
    n_layers: int,
    d_model: int,
    d_transcoder: int,
    *,
    kind: str = "relu",
    cross_layer: bool = False,
    skip: bool = False,
    k: int = 8,
    seed: int = 0,
    density: float = 0.1,
    dtype: torch.dtype = torch.float32,
) -> TranscoderSet:
    """Random transcoders for tests and demos; biases chosen so roughly `density` of features fire."""
    g = torch.Generator().manual_seed(seed)
    layers = []
    for layer in range(n_layers):
        W_enc = torch.randn(d_transcoder, d_model, generator=g) / d_model**0.5
        n_out = n_layers - layer if cross_layer else 1
        W_dec = torch.randn(d_transcoder, n_out, d_model, generator=g) / d_transcoder**0.5
        # With unit-variance inputs pre-activations are ≈ N(0, 1): a bias at -z keeps P(pre > 0) ≈ density.
        z = float(torch.distributions.Normal(0, 1).icdf(torch.tensor(1 - density)))
        b_enc = torch.full((d_transcoder,), -z) + 0.1 * torch.randn(d_transcoder, generator=g)
        threshold = None
        if kind == "jumprelu":
            threshold = 0.05 + 0.1 * torch.rand(d_transcoder, generator=g)
        act = Activation(kind, threshold=threshold, k=k if kind == "topk" else None)
        layers.append(
            LayerWeights(
                W_enc=W_enc.to(dtype),
                b_enc=(b_enc if kind != "topk" else torch.zeros(d_transcoder)).to(dtype),
                b_dec=(0.01 * torch.randn(d_model, generator=g)).to(dtype),
                activation=act,
                W_skip=(0.05 * torch.randn(d_model, d_model, generator=g)).to(dtype) if skip else None,
                W_dec=(W_dec if cross_layer else W_dec[:, 0]).to(dtype),
            )
        )
    return TranscoderSet(layers=layers, cross_layer=cross_layer, name=f"random-{kind}{'-clt' if cross_layer else ''}")
