"""Transcoder sets: per-layer (PLT) and cross-layer (CLT), in circuit-tracer's on-disk layouts.

A transcoder reads `mlp.hook_in` of layer l (the normalised MLP input x) and writes `mlp.hook_out`:
    pre  = x @ W_enc.T + b_enc                  [d_t]
    a    = act(pre)                             ReLU | JumpReLU(threshold) | TopK(k) (top k, then ReLU)
    out  = a @ W_dec + b_dec + x @ W_skip.T     (CLT: layer l's output sums the decoders of all layers ≤ l)

Decoders are read lazily from memory-mapped safetensors, so RAM holds only the rows a prompt touches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save_file

ACTIVATIONS = ("relu", "jumprelu", "topk")


@dataclass
class Activation:
    kind: str = "relu"
    threshold: torch.Tensor | None = None  # [d_t] for JumpReLU
    k: int | None = None  # for TopK

    def __call__(self, pre: torch.Tensor) -> torch.Tensor:
        if self.kind == "jumprelu":
            return pre * (pre > self.threshold)
        if self.kind == "topk":
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
    dec_file: str | None = None
    dec_key: str = "W_dec"


@dataclass
class TranscoderSet:
    """Transcoders for layers 0..L-1. `cross_layer` sets write from layer l into every layer ≥ l."""

    layers: list[LayerWeights]
    cross_layer: bool = False
    feature_input_hook: str = "mlp.hook_in"
    feature_output_hook: str = "mlp.hook_out"
    name: str = "transcoders"
    model_name: str | None = None
    path: str | None = None
    _open: dict = field(default_factory=dict, repr=False)

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
        else:
            handle = self._open.get(lw.dec_file)
            if handle is None:
                handle = self._open[lw.dec_file] = safe_open(lw.dec_file, framework="pt", device="cpu")
            idx = index.cpu()
            # safetensors slices want sorted unique indices; read those and scatter back.
            uniq, inverse = torch.unique(idx, return_inverse=True)
            rows = handle.get_slice(lw.dec_key)[uniq.numpy()][inverse]
            rows = rows.to(device=self.device, dtype=self.dtype)
        return rows if self.cross_layer else rows[:, None, :]

    def decode(self, layer: int, acts_by_layer: list[torch.Tensor], x_in: torch.Tensor | None) -> torch.Tensor:
        """`mlp.hook_out` reconstruction of `layer` from dense activations of every layer ≤ layer ([P, d_t] each)."""
        out = self.layers[layer].b_dec.expand(acts_by_layer[layer].shape[0], -1).clone()
        for src in range(layer + 1) if self.cross_layer else (layer,):
            a = acts_by_layer[src]
            pos, idx = a.nonzero(as_tuple=True)
            if len(idx):
                vec = self.decoder_rows(src, idx)[:, layer - src]
                # A one-hot matmul scatters rows to positions far faster than index_add_ on CPU.
                onehot = torch.nn.functional.one_hot(pos, out.shape[0]).T.to(vec.dtype)
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


# ---------------------------------------------------------------------------------------------- reading


def load_transcoder_set(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    lazy_decoder: bool = True,
) -> TranscoderSet:
    """Load a transcoder set from a folder (circuit-tracer layouts) or its `config.yaml`."""
    path = Path(path)
    cfg_file = path if path.is_file() and path.suffix in (".yaml", ".yml") else path / "config.yaml"
    root = cfg_file.parent
    cfg = yaml.safe_load(cfg_file.read_text()) if cfg_file.exists() else {}
    kind = cfg.get("model_kind") or (
        "cross_layer_transcoder" if list(root.glob("W_enc_*.safetensors")) else "transcoder_set"
    )
    if kind == "cross_layer_transcoder":
        tset = _load_clt(root, cfg, lazy_decoder)
    else:
        tset = _load_plt(root, cfg, lazy_decoder)
    tset.feature_input_hook = cfg.get("feature_input_hook", tset.feature_input_hook)
    tset.feature_output_hook = cfg.get("feature_output_hook", tset.feature_output_hook)
    tset.model_name = cfg.get("model_name")
    tset.name = cfg.get("scan") or cfg.get("name") or root.name
    tset.path = str(root)
    return tset.to(device, dtype)


def _layer_files(root: Path, cfg: dict) -> list[Path]:
    listed = cfg.get("transcoders")
    if listed:
        return [_resolve(root, p) for p in listed]
    files = sorted(root.glob("layer_*.safetensors"), key=lambda p: int(p.stem.split("_")[1]))
    if not files:
        files = sorted(root.glob("layer_*/**/params.npz"), key=lambda p: int(p.relative_to(root).parts[0][6:]))
    if not files:
        raise FileNotFoundError(f"no transcoder files in {root} (expected layer_{{i}}.safetensors or config.yaml)")
    return files


def _resolve(root: Path, ref: str) -> Path:
    if ref.startswith("hf://"):
        from huggingface_hub import hf_hub_download  # only when a config names hub files

        repo_path, _, revision = ref[5:].partition("?revision=")
        parts = repo_path.split("/")
        return Path(hf_hub_download("/".join(parts[:2]), "/".join(parts[2:]), revision=revision or None))
    p = Path(ref)
    return p if p.is_absolute() else root / p


def _activation(tensors: dict, cfg: dict, threshold_key: str = "activation_function.threshold") -> Activation:
    if threshold_key in tensors:
        return Activation("jumprelu", threshold=tensors[threshold_key])
    if "k" in tensors or cfg.get("activation") == "topk":
        k = int(tensors["k"].reshape(-1)[0]) if "k" in tensors else int(cfg["k"])
        return Activation("topk", k=k)
    return Activation("relu")


def _load_plt(root: Path, cfg: dict, lazy_decoder: bool) -> TranscoderSet:
    layers = []
    for file in _layer_files(root, cfg):
        if file.suffix == ".npz":
            layers.append(_load_gemmascope_npz(file))
        elif "w_enc" in _keys(file):
            layers.append(_load_gemmascope2(file))
        else:
            with safe_open(str(file), framework="pt", device="cpu") as f:
                t = {k: f.get_tensor(k) for k in f.keys() if not (lazy_decoder and k == "W_dec")}
            layers.append(
                LayerWeights(
                    W_enc=t["W_enc"],
                    b_enc=t["b_enc"],
                    b_dec=t["b_dec"],
                    activation=_activation(t, cfg),
                    W_skip=t.get("W_skip"),
                    W_dec=t.get("W_dec"),
                    dec_file=str(file),
                )
            )
    return TranscoderSet(layers=layers, cross_layer=False)


def _keys(file: Path) -> set[str]:
    with safe_open(str(file), framework="pt", device="cpu") as f:
        return set(f.keys())


def _load_gemmascope_npz(file: Path) -> LayerWeights:
    """GemmaScope `params.npz`: W_enc stored [d, d_t] (transposed here), JumpReLU `threshold`."""
    p = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in np.load(file).items()}
    return LayerWeights(
        W_enc=p["W_enc"].T.contiguous(),
        b_enc=p["b_enc"],
        b_dec=p["b_dec"],
        activation=Activation("jumprelu", threshold=p["threshold"]),
        W_dec=p["W_dec"],
    )


def _load_gemmascope2(file: Path) -> LayerWeights:
    """Gemma Scope 2 safetensors: w_enc [d, d_t], w_dec [d_t, d], threshold, optional affine skip (x @ A)."""
    with safe_open(str(file), framework="pt", device="cpu") as f:
        p = {k: f.get_tensor(k) for k in f.keys()}
    skip = p.get("affine_skip_connection")
    return LayerWeights(
        W_enc=p["w_enc"].T.contiguous(),
        b_enc=p["b_enc"],
        b_dec=p["b_dec"],
        activation=Activation("jumprelu", threshold=p["threshold"]),
        W_skip=None if skip is None else skip.T.contiguous(),
        W_dec=p["w_dec"],
    )


def _load_clt(root: Path, cfg: dict, lazy_decoder: bool) -> TranscoderSet:
    n_layers = len(list(root.glob("W_enc_*.safetensors")))
    if n_layers == 0:
        raise FileNotFoundError(f"no W_enc_{{i}}.safetensors files in {root}")
    layers = []
    for i in range(n_layers):
        with safe_open(str(root / f"W_enc_{i}.safetensors"), framework="pt", device="cpu") as f:
            t = {k: f.get_tensor(k) for k in f.keys()}
        dec_file = root / f"W_dec_{i}.safetensors"
        W_dec = None
        if not lazy_decoder:
            with safe_open(str(dec_file), framework="pt", device="cpu") as f:
                W_dec = f.get_tensor(f"W_dec_{i}")
        act = _activation(t, cfg, threshold_key=f"threshold_{i}")
        if act.threshold is not None:
            act.threshold = act.threshold.reshape(-1)
        layers.append(
            LayerWeights(
                W_enc=t[f"W_enc_{i}"],
                b_enc=t[f"b_enc_{i}"],
                b_dec=t[f"b_dec_{i}"],
                activation=act,
                W_skip=t.get(f"W_skip_{i}"),
                W_dec=W_dec,
                dec_file=str(dec_file),
                dec_key=f"W_dec_{i}",
            )
        )
    return TranscoderSet(
        layers=layers, cross_layer=True, feature_input_hook="hook_resid_mid", feature_output_hook="hook_mlp_out"
    )


# ---------------------------------------------------------------------------------------------- writing


def save_transcoder_set(
    tset: TranscoderSet, path: str | Path, *, model_name: str | None = None, extra_config: dict | None = None
) -> Path:
    """Write a set in circuit-tracer's layout (PLT `layer_{i}.safetensors` or CLT `W_enc_{i}`/`W_dec_{i}`)."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    tset.materialize()
    act = tset.layers[0].activation
    cfg = {
        "model_kind": "cross_layer_transcoder" if tset.cross_layer else "transcoder_set",
        "model_name": model_name or tset.model_name or "",
        "feature_input_hook": tset.feature_input_hook,
        "feature_output_hook": tset.feature_output_hook,
        "scan": tset.name,
    }
    if act.kind == "topk":
        cfg.update(activation="topk", k=act.k)
    for i, lw in enumerate(tset.layers):
        if tset.cross_layer:
            enc = {f"W_enc_{i}": lw.W_enc, f"b_enc_{i}": lw.b_enc, f"b_dec_{i}": lw.b_dec}
            if lw.activation.threshold is not None:
                enc[f"threshold_{i}"] = lw.activation.threshold
            if lw.W_skip is not None:
                enc[f"W_skip_{i}"] = lw.W_skip
            save_file(_cpu(enc), str(root / f"W_enc_{i}.safetensors"))
            save_file(_cpu({f"W_dec_{i}": lw.W_dec}), str(root / f"W_dec_{i}.safetensors"))
        else:
            t = {"W_enc": lw.W_enc, "W_dec": lw.W_dec, "b_enc": lw.b_enc, "b_dec": lw.b_dec}
            if lw.activation.threshold is not None:
                t["activation_function.threshold"] = lw.activation.threshold
            if lw.activation.kind == "topk":
                t["k"] = torch.tensor([lw.activation.k], dtype=torch.int64)
            if lw.W_skip is not None:
                t["W_skip"] = lw.W_skip
            save_file(_cpu(t), str(root / f"layer_{i}.safetensors"))
    if not tset.cross_layer:
        cfg["transcoders"] = [f"layer_{i}.safetensors" for i in range(tset.n_layers)]
    cfg.update(extra_config or {})
    (root / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root


def _cpu(tensors: dict) -> dict:
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


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
