"""Transcoder files: every on-disk layout, read and written here and nowhere else.

Every layout is read into one form, `LayerTensors` (circuit-tracer's PLT names and shapes), and written from it:

    PLT           config.yaml + layer_{i}.safetensors: W_enc [d_t, d], W_dec [d_t, d], b_enc [d_t], b_dec [d],
                  optional W_skip [d, d] (skip = x @ W_skip.T), activation_function.threshold [d_t] (JumpReLU)
                  or k (TopK; or `activation: topk` and `k` in config.yaml)
    CLT           config.yaml + W_enc_{i}.safetensors (W_enc_i, b_enc_i, b_dec_i, threshold_i, W_skip_i) and
                  W_dec_{i}.safetensors (W_dec_i [d_t, L - i, d]: layer i's writes into layers i..L-1)
    GemmaScope    layer_{i}/**/params.npz (or listed by config.yaml): W_enc stored [d, d_t], JumpReLU threshold
    GemmaScope 2  safetensors (or npz): w_enc [d, d_t], w_dec, threshold, affine_skip_connection A (x @ A)

config.yaml's `transcoders` lists layer files by path (relative to the folder) or as
`hf://owner/name/path/in/repo?revision=r` (`parse_hf_uri`). Decoders can stay on disk (`DecoderFile`): a prompt
reads only the rows of the features it touches.

Sets written here are for circuit-tracer 0.5.0 too (bench/peer_transcoders.py checks it): config.yaml always has
`scan` and hooks it maps, and a set it would misread gets a `model_kind` it does not know (`model_kind`), so its
`load_transcoders` refuses it by name instead of running something else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

PLT_KIND = "transcoder_set"
CLT_KIND = "cross_layer_transcoder"
# circuit-tracer 0.5.0 has no TopK loader (a TopK set runs there as ReLU, without a word) and its CLT loader
# reads no skip (nor would it apply one as we store it): such sets are written with these suffixes on their kind.
TOPK_SUFFIX = "_topk"
SKIP_SUFFIX = "_skip"
THRESHOLD = "activation_function.threshold"  # a PLT file's JumpReLU threshold
# The normalised MLP input and the MLP block's contribution to the residual (for Gemma, after its
# post-feedforward norm): the names circuit-tracer's nnsight maps of Gemma 3 and Llama and TransformerLens share
# for those places (Gemma 3's map has no `mlp.hook_out`).
PLT_HOOKS = ("mlp.hook_in", "hook_mlp_out")
CLT_HOOKS = ("hook_resid_mid", "hook_mlp_out")  # what a CLT config.yaml that names no hooks means

Tensors = dict[str, torch.Tensor]


class DecoderFile:
    """One decoder tensor in a safetensors file, memory-mapped: rows are read when asked for."""

    def __init__(self, file: str | Path, key: str):
        self.file, self.key = str(file), key
        self._handle: Any = None  # safe_open's handle, opened on first use

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        if self._handle is None:
            self._handle = safe_open(self.file, framework="pt", device="cpu")
        # safetensors slices want sorted unique indices; read those and scatter back.
        uniq, inverse = torch.unique(index.cpu(), return_inverse=True)
        return self._handle.get_slice(self.key)[uniq.numpy()][inverse]


@dataclass
class LayerTensors:
    """One layer as stored, in circuit-tracer PLT names and shapes whatever the layout on disk."""

    W_enc: torch.Tensor  # [d_t, d]
    b_enc: torch.Tensor  # [d_t]
    b_dec: torch.Tensor  # [d]
    W_dec: torch.Tensor | None = None  # PLT [d_t, d] or CLT [d_t, L - l, d]; None: rows come from `decoder`
    W_skip: torch.Tensor | None = None  # [d, d]
    threshold: torch.Tensor | None = None  # [d_t]: JumpReLU
    k: int | None = None  # TopK
    decoder: DecoderFile | None = None

    @property
    def activation(self) -> str:
        """The rule every layout follows: a threshold means JumpReLU, a k TopK, neither ReLU."""
        if self.threshold is not None:
            return "jumprelu"
        return "topk" if self.k is not None else "relu"


@dataclass
class StoredSet:
    """A transcoder set as read from a folder: its layers and what config.yaml says about them."""

    layers: list[LayerTensors]
    cross_layer: bool
    feature_input_hook: str
    feature_output_hook: str
    model_name: str | None
    name: str
    path: str


def parse_hf_uri(uri: str) -> tuple[str, str, str | None]:
    """`hf://owner/name/path/in/repo?revision=x` -> (repo, path, revision)."""
    rest, _, revision = uri.removeprefix("hf://").partition("?revision=")
    parts = rest.split("/")
    return "/".join(parts[:2]), "/".join(parts[2:]), revision or None


def layer_file(root: Path, layer: int) -> Path:
    """Where a PLT folder keeps `layer`."""
    return root / f"layer_{layer}.safetensors"


def model_kind(*, cross_layer: bool, activation: str | None, skip: bool = False) -> str:
    """config.yaml's `model_kind`: circuit-tracer's two kinds where it reads the set as we do, else one it
    refuses by name (`transcoder_set_topk`, `cross_layer_transcoder_skip`, ...)."""
    kind = CLT_KIND if cross_layer else PLT_KIND
    if activation == "topk":
        kind += TOPK_SUFFIX
    if cross_layer and skip:
        kind += SKIP_SUFFIX
    return kind


BOTH = (False, True)
MODEL_KINDS = {model_kind(cross_layer=c, activation=a, skip=s) for c in BOTH for a in ("relu", "topk") for s in BOTH}


def _cross_layer(kind: str, root: Path) -> bool:
    if kind not in MODEL_KINDS:
        raise ValueError(f"{root}/config.yaml: unknown model_kind {kind!r} (known: {', '.join(sorted(MODEL_KINDS))})")
    return kind.startswith(CLT_KIND)


# ---------------------------------------------------------------------------------------------- reading


def read_transcoder_files(path: str | Path, *, lazy_decoder: bool = True) -> StoredSet:
    """Read a transcoder set from a folder (any layout above) or its `config.yaml`."""
    path = Path(path)
    cfg_file = path if path.is_file() and path.suffix in (".yaml", ".yml") else path / "config.yaml"
    root = cfg_file.parent
    cfg = yaml.safe_load(cfg_file.read_text()) if cfg_file.exists() else {}
    kind = cfg.get("model_kind") or (CLT_KIND if list(root.glob("W_enc_*.safetensors")) else PLT_KIND)
    cross_layer = _cross_layer(kind, root)
    if cross_layer:
        layers = [_read_clt_layer(root, i, cfg, lazy_decoder) for i in range(_clt_layer_count(root))]
    else:
        layers = [_read_plt_layer(file, cfg, lazy_decoder) for file in _plt_layer_files(root, cfg)]
    hook_in, hook_out = CLT_HOOKS if cross_layer else PLT_HOOKS
    return StoredSet(
        layers=layers,
        cross_layer=cross_layer,
        feature_input_hook=cfg.get("feature_input_hook", hook_in),
        feature_output_hook=cfg.get("feature_output_hook", hook_out),
        model_name=cfg.get("model_name"),
        name=cfg.get("scan") or cfg.get("name") or root.name,
        path=str(root),
    )


def _plt_layer_files(root: Path, cfg: dict) -> list[Path]:
    listed = cfg.get("transcoders")
    if listed:
        return [_resolve(root, ref) for ref in listed]
    files = sorted(root.glob("layer_*.safetensors"), key=lambda p: int(p.stem.split("_")[1]))
    if not files:
        files = sorted(root.glob("layer_*/**/params.npz"), key=lambda p: int(p.relative_to(root).parts[0][6:]))
    if not files:
        raise FileNotFoundError(f"no transcoder files in {root} (expected layer_{{i}}.safetensors or config.yaml)")
    return files


def _resolve(root: Path, ref: str) -> Path:
    if ref.startswith("hf://"):
        from huggingface_hub import hf_hub_download  # only when a config names hub files

        repo, file, revision = parse_hf_uri(ref)
        return Path(hf_hub_download(repo, file, revision=revision))
    p = Path(ref)
    return p if p.is_absolute() else root / p


def _read_plt_layer(file: Path, cfg: dict, lazy_decoder: bool) -> LayerTensors:
    if file.suffix == ".npz":
        return read_gemmascope(file)
    if "w_enc" in _keys(file):  # Gemma Scope 2's names
        return read_gemmascope2(file)
    with safe_open(str(file), framework="pt", device="cpu") as f:
        t = {k: f.get_tensor(k) for k in f.keys() if not (lazy_decoder and k == "W_dec")}
    return LayerTensors(
        W_enc=t["W_enc"],
        b_enc=t["b_enc"],
        b_dec=t["b_dec"],
        W_dec=t.get("W_dec"),
        W_skip=t.get("W_skip"),
        threshold=t.get(THRESHOLD),
        k=_k(t, cfg, has_threshold=THRESHOLD in t),
        decoder=DecoderFile(file, "W_dec"),
    )


def _keys(file: Path) -> list[str]:
    with safe_open(str(file), framework="pt", device="cpu") as f:
        return list(f.keys())


def _k(t: Tensors, cfg: dict, *, has_threshold: bool) -> int | None:
    """TopK's k: from the layer file, else from config.yaml when it says `activation: topk`."""
    if has_threshold:
        return None
    if "k" in t:
        return int(t["k"].reshape(-1)[0])
    topk = cfg.get("activation") == "topk" or str(cfg.get("model_kind", "")).endswith(TOPK_SUFFIX)
    return int(cfg["k"]) if topk else None


def read_gemmascope(file: Path) -> LayerTensors:
    """GemmaScope `params.npz`: W_enc stored [d, d_t] (transposed here), JumpReLU `threshold`."""
    p = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in np.load(file).items()}
    return LayerTensors(
        W_enc=p["W_enc"].T.contiguous(), b_enc=p["b_enc"], b_dec=p["b_dec"], W_dec=p["W_dec"], threshold=p["threshold"]
    )


def read_gemmascope2(file: Path) -> LayerTensors:
    """Gemma Scope 2: w_enc [d, d_t], w_dec [d_t, d], threshold, and an affine skip A applied as x @ A, which is
    W_skip = A.T in our convention (skip = x @ W_skip.T)."""
    if file.suffix == ".npz":
        p = {k: torch.from_numpy(v) for k, v in np.load(file).items()}
    else:
        p = load_file(str(file))
    skip = p.get("affine_skip_connection")
    return LayerTensors(
        W_enc=p["w_enc"].T.contiguous(),
        b_enc=p["b_enc"],
        b_dec=p["b_dec"],
        W_dec=p["w_dec"],
        W_skip=None if skip is None else skip.T.contiguous(),
        threshold=p["threshold"],
    )


def _clt_layer_count(root: Path) -> int:
    n_layers = len(list(root.glob("W_enc_*.safetensors")))
    if n_layers == 0:
        raise FileNotFoundError(f"no W_enc_{{i}}.safetensors files in {root}")
    return n_layers


def _read_clt_layer(root: Path, i: int, cfg: dict, lazy_decoder: bool) -> LayerTensors:
    with safe_open(str(root / f"W_enc_{i}.safetensors"), framework="pt", device="cpu") as f:
        t = {k: f.get_tensor(k) for k in f.keys()}
    decoder = DecoderFile(root / f"W_dec_{i}.safetensors", f"W_dec_{i}")
    threshold = t.get(f"threshold_{i}")
    return LayerTensors(
        W_enc=t[f"W_enc_{i}"],
        b_enc=t[f"b_enc_{i}"],
        b_dec=t[f"b_dec_{i}"],
        W_dec=None if lazy_decoder else load_file(decoder.file)[decoder.key],
        W_skip=t.get(f"W_skip_{i}"),
        threshold=None if threshold is None else threshold.reshape(-1),
        k=_k(t, cfg, has_threshold=threshold is not None),
        decoder=decoder,
    )


# ---------------------------------------------------------------------------------------------- writing


def write_transcoder_set(
    root: str | Path,
    layers: list[LayerTensors],
    *,
    cross_layer: bool = False,
    model_name: str = "",
    scan: str | None = None,
    hooks: tuple[str, str] = PLT_HOOKS,
    extra_config: dict | None = None,
) -> Path:
    """Write a whole set in circuit-tracer's layout (PLT `layer_{i}.safetensors` or CLT `W_enc_{i}`/`W_dec_{i}`);
    `scan` (circuit-tracer's name of the set) defaults to the folder's name."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for i, layer in enumerate(layers):
        write_layer(root, i, layer, cross_layer=cross_layer)
    first = layers[0]
    cfg = set_config(
        n_layers=len(layers),
        cross_layer=cross_layer,
        model_name=model_name,
        scan=scan or root.resolve().name,
        hooks=hooks,
        activation=first.activation,
        k=first.k,
        skip=first.W_skip is not None,
        extra=extra_config,
    )
    return write_config(root, cfg)


def write_layer(root: Path, i: int, layer: LayerTensors, *, cross_layer: bool = False) -> None:
    """Write layer `i`'s files into `root` (what a trainer calls as each layer finishes)."""
    if cross_layer:
        enc = {f"W_enc_{i}": layer.W_enc, f"b_enc_{i}": layer.b_enc, f"b_dec_{i}": layer.b_dec}
        if layer.threshold is not None:
            enc[f"threshold_{i}"] = layer.threshold
        if layer.W_skip is not None:
            enc[f"W_skip_{i}"] = layer.W_skip
        # A CLT's k lives in config.yaml only.
        _save(root / f"W_enc_{i}.safetensors", enc)
        _save(root / f"W_dec_{i}.safetensors", {f"W_dec_{i}": _decoder(layer)})
    else:
        _save(layer_file(root, i), _plt_tensors(layer))


def _decoder(layer: LayerTensors) -> torch.Tensor:
    if layer.W_dec is None:
        raise ValueError("a layer is written from memory: read its decoder in first (TranscoderSet.materialize)")
    return layer.W_dec


def _plt_tensors(layer: LayerTensors) -> Tensors:
    t = {"W_enc": layer.W_enc, "W_dec": _decoder(layer), "b_enc": layer.b_enc, "b_dec": layer.b_dec}
    if layer.threshold is not None:
        t[THRESHOLD] = layer.threshold
    if layer.k is not None:
        t["k"] = torch.tensor(layer.k, dtype=torch.int64)
    if layer.W_skip is not None:
        t["W_skip"] = layer.W_skip
    return t


def _save(file: Path, tensors: Tensors) -> None:
    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(file))


def set_config(
    *,
    n_layers: int,
    cross_layer: bool = False,
    model_name: str | None = "",
    scan: str | None = None,
    hooks: tuple[str, str] = PLT_HOOKS,
    activation: str | None = None,
    k: int | None = None,
    skip: bool = False,
    extra: dict | None = None,
) -> dict[str, Any]:
    """A set's config.yaml: kind (`model_kind`), model, hooks, name (`scan`, which circuit-tracer requires: the
    model's name when not given), the PLT file list, activation, then `extra`."""
    cfg: dict[str, Any] = {
        "model_kind": model_kind(cross_layer=cross_layer, activation=activation, skip=skip),
        "model_name": model_name,
        "feature_input_hook": hooks[0],
        "feature_output_hook": hooks[1],
        "scan": scan or model_name or "transcoders",
    }
    if not cross_layer:
        cfg["transcoders"] = [layer_file(Path(), i).name for i in range(n_layers)]
    if activation is not None:
        cfg["activation"] = activation
    if activation == "topk":
        cfg["k"] = k
    cfg.update(extra or {})
    return cfg


def write_config(root: Path, cfg: dict[str, Any]) -> Path:
    """Write config.yaml (keys in the order given); returns the set's folder."""
    (root / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root


# ---------------------------------------------------------------------------------------------- conversions


def gemmascope_npz_to_plt(npz: Path, out: Path) -> None:
    """GemmaScope `params.npz` -> PLT layer file (float32)."""
    _save_plt_float(read_gemmascope(npz), out)


def gemmascope2_to_plt(path: Path, out: Path) -> None:
    """Gemma Scope 2 layer file -> PLT layer file (float32; W_skip = A.T)."""
    _save_plt_float(read_gemmascope2(path), out)


def _save_plt_float(layer: LayerTensors, out: Path) -> None:
    _save(out, {k: v.float() for k, v in _plt_tensors(layer).items()})
