"""What the atlas reads: the activation cache, the transcoder set, and the model's output head.

Everything here follows the on-disk contracts in docs/architecture.md; readers are small and private to
the atlas so the atlas does not wait on (or break with) the engine's richer loaders.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# ---------------------------------------------------------------------------------------------------------
# Activation cache (written by training; layout in docs/architecture.md)
# ---------------------------------------------------------------------------------------------------------


class ActivationCache:
    """Read-only view of `models/<preset>/activations/` (manifest.json, tokens.bin, layer_{l}_in.bin)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"no activation cache at {self.path} (manifest.json missing)")
        self.manifest = json.loads(manifest_path.read_text())
        self.n_seqs_total = int(self.manifest["n_seqs"])
        self.seq_len = int(self.manifest["seq_len"])
        self.d_model = int(self.manifest["d_model"])
        self.layers = [int(x) for x in self.manifest["layers"]]
        # An interrupted cache build leaves `complete_seqs` < n_seqs; only those rows are valid.
        self.n_seqs = int(self.manifest.get("complete_seqs", self.n_seqs_total))
        if self.manifest.get("dtype", "bfloat16") != "bfloat16":
            raise ValueError(f"activation cache dtype {self.manifest.get('dtype')!r} unsupported (need bfloat16)")
        self._tokens = np.memmap(
            self.path / "tokens.bin", dtype=np.int32, mode="r", shape=(self.n_seqs_total, self.seq_len)
        )
        self._layer_in: dict[int, torch.Tensor] = {}

    @staticmethod
    def exists(path: str | Path) -> bool:
        p = Path(path)
        return (p / "manifest.json").is_file() and (p / "tokens.bin").is_file()

    def tokens(self, n_seqs: int | None = None) -> torch.Tensor:
        """int64 [n_seqs, T] token ids (a copy; small)."""
        n = self.n_seqs if n_seqs is None else n_seqs
        return torch.from_numpy(np.asarray(self._tokens[:n], dtype=np.int64))

    def layer_in(self, layer: int) -> torch.Tensor:
        """bf16 [N*T, d] MLP inputs of one layer, memory-mapped (rows are read on demand)."""
        if layer not in self._layer_in:
            # mode "c" (copy-on-write) gives torch a writable buffer without ever writing to the file.
            mm = np.memmap(
                self.path / f"layer_{layer}_in.bin",
                dtype=np.uint16,
                mode="c",
                shape=(self.n_seqs_total * self.seq_len, self.d_model),
            )
            self._layer_in[layer] = torch.from_numpy(mm).view(torch.bfloat16)
        return self._layer_in[layer]

    def drop(self, layer: int) -> None:
        self._layer_in.pop(layer, None)


# ---------------------------------------------------------------------------------------------------------
# Transcoders (PLT layout: config.yaml + layer_{i}.safetensors)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class LayerTranscoder:
    W_enc: torch.Tensor  # [d_t, d]
    b_enc: torch.Tensor  # [d_t]
    W_dec: torch.Tensor  # [d_t, d]
    activation: str  # "relu" | "jumprelu" | "topk"
    threshold: torch.Tensor | None = None  # [d_t] for JumpReLU
    k: int | None = None  # for TopK

    @property
    def d_transcoder(self) -> int:
        return self.W_enc.shape[0]


class TranscoderSet:
    """Per-layer view of a transcoder set for the atlas.

    Uses the engine's `load_transcoder_set` (every circuit-tracer layout, CLTs, lazy decoders) and falls
    back to a small reader of the PLT layout (docs/architecture.md) when the engine is unavailable.
    For a CLT a feature's output direction is the sum of its decoder rows over the layers it writes to
    (its total direct write into the residual stream).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"no transcoder folder at {self.path}")
        self._engine = None
        try:
            from circuitboard.engine.transcoders import load_transcoder_set
        except ImportError:
            load_transcoder_set = None
        if load_transcoder_set is not None:
            self._engine = load_transcoder_set(self.path, lazy_decoder=True)
            self.n_layers = self._engine.n_layers
            return
        self.config: dict = {}
        cfg = self.path / "config.yaml"
        if cfg.is_file():
            import yaml

            self.config = yaml.safe_load(cfg.read_text()) or {}
        files = self.config.get("transcoders")
        if files:
            self.files = [self._resolve(f) for f in files]
        else:
            self.files = sorted(self.path.glob("layer_*.safetensors"), key=lambda p: int(p.stem.split("_")[1]))
        if not self.files:
            raise FileNotFoundError(f"no layer_*.safetensors in {self.path}")
        self.n_layers = len(self.files)

    def _resolve(self, f: str) -> Path:
        p = Path(str(f).removeprefix("file://"))
        return p if p.is_absolute() else self.path / p

    def fingerprint(self) -> str:
        """Cheap identity of the set (names, sizes, mtimes) so a rebuilt set invalidates a resumed atlas."""
        parts = []
        for f in sorted(self.path.rglob("*")):
            if f.is_file() and f.suffix in (".safetensors", ".npz", ".yaml"):
                st = f.stat()
                parts.append(f"{f.relative_to(self.path)}:{st.st_size}:{int(st.st_mtime)}")
        return "|".join(parts)

    def layer(self, i: int) -> LayerTranscoder:
        if self._engine is not None:
            lw = self._engine.layers[i]
            d_t = lw.W_enc.shape[0]
            dec = self._engine.decoder_rows(i, torch.arange(d_t)).float().sum(1)  # [d_t, d]
            act = lw.activation
            thr = act.threshold.float().reshape(-1) if act.threshold is not None else None
            return LayerTranscoder(lw.W_enc.float(), lw.b_enc.float(), dec, act.kind, threshold=thr, k=act.k)
        from safetensors.torch import load_file

        t = load_file(str(self.files[i]))
        W_enc, W_dec = t["W_enc"].float(), t["W_dec"].float()
        if W_enc.shape != W_dec.shape and W_enc.T.shape == W_dec.shape:
            W_enc = W_enc.T.contiguous()  # some writers store W_enc as [d, d_t]
        b_enc = t.get("b_enc", torch.zeros(W_enc.shape[0])).float()
        threshold = t.get("activation_function.threshold", t.get("threshold"))
        k = t.get("k", None)
        kind = str(self.config.get("activation", "")).lower()
        if threshold is not None:
            return LayerTranscoder(W_enc, b_enc, W_dec, "jumprelu", threshold=threshold.float().reshape(-1))
        if k is not None or kind == "topk":
            k_val = int(k.reshape(-1)[0]) if k is not None else int(self.config["k"])
            return LayerTranscoder(W_enc, b_enc, W_dec, "topk", k=k_val)
        return LayerTranscoder(W_enc, b_enc, W_dec, "relu")


# ---------------------------------------------------------------------------------------------------------
# Model output head: final norm gain and unembedding (no model instantiation needed for a folder)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class OutputHead:
    W_U: torch.Tensor  # [V, d]
    gain: torch.Tensor  # [d]: the frozen final norm's effective weight (Gemma: 1 + weight)
    center: bool  # LayerNorm subtracts the mean, so a direction is centred before the gain
    vocab_size: int


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


def _is_gemma(model_type: str) -> bool:
    # Gemma 1/2/3 RMSNorm computes x * (1 + weight); every other family uses x * weight.
    return model_type.lower().startswith("gemma")


def head_from_folder(model_dir: str | Path) -> OutputHead:
    """Read the final norm weight and unembedding straight from a model folder's safetensors."""
    from safetensors import safe_open

    model_dir = Path(model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    model_type = str(cfg.get("model_type", ""))
    text_cfg = cfg.get("text_config") or {}
    model_type = text_cfg.get("model_type", model_type) if model_type.endswith("conditional") else model_type
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
    norm = next((found[k] for k in _NORM_KEYS if k in found), None)
    W_U = next((found[k] for k in _UNEMBED_KEYS if k in found), None)
    if W_U is None:  # tied embeddings
        W_U = next((found[k] for k in _EMBED_KEYS if k in found), None)
    if W_U is None:
        raise KeyError(f"no unembedding (lm_head / embed_tokens) in {model_dir}")
    d = W_U.shape[1]
    if norm is None:
        norm = torch.ones(d)
    gain = (1.0 + norm) if _is_gemma(model_type) else norm
    return OutputHead(W_U=W_U, gain=gain, center=model_type == "gpt2", vocab_size=W_U.shape[0])


def head_from_model(model: torch.nn.Module) -> OutputHead:
    """Same, from a loaded transformers CausalLM (uses the engine's adapter when it is available)."""
    model_type = str(getattr(getattr(model, "config", None), "model_type", ""))
    W_U = model.get_output_embeddings().weight.detach().float()
    norm_mod = None
    for path in ("model.norm", "transformer.ln_f", "model.language_model.norm", "language_model.model.norm"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            norm_mod = obj
            break
    w = getattr(norm_mod, "weight", None)
    norm = w.detach().float() if w is not None else torch.ones(W_U.shape[1])
    gemma = _is_gemma(model_type) or "Gemma" in type(norm_mod).__name__
    gain = (1.0 + norm) if gemma else norm
    return OutputHead(W_U=W_U, gain=gain, center=isinstance(norm_mod, torch.nn.LayerNorm), vocab_size=W_U.shape[0])


def token_texts(tokenizer, ids: list[int]) -> list[str]:
    """Readable text of single tokens (decode, not the raw BPE piece: ' Dallas' rather than 'ĠDallas')."""
    if not ids:
        return []
    return list(tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False))


# ---------------------------------------------------------------------------------------------------------
# Fallback: compute the cache with one model pass when training has not written it
# ---------------------------------------------------------------------------------------------------------


def mlp_input_module(model: torch.nn.Module, layer: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(module whose output is mlp.hook_in, module whose output is mlp.hook_out) for one layer."""
    try:  # the engine's adapter is the single source of truth once it exists
        from circuitboard.engine.adapters import mlp_io_modules  # type: ignore

        return mlp_io_modules(model, layer)
    except Exception:  # noqa: BLE001 - engine not landed yet or unknown architecture: use our own table
        pass
    base = getattr(model, "model", None) or model.transformer
    base = getattr(base, "language_model", base)
    blocks = getattr(base, "layers", None) or base.h
    block = blocks[layer]
    if hasattr(block, "pre_feedforward_layernorm"):  # Gemma 2/3
        return block.pre_feedforward_layernorm, block.post_feedforward_layernorm
    if hasattr(block, "ln_2"):  # GPT-2
        return block.ln_2, block.mlp
    return block.post_attention_layernorm, block.mlp  # Llama / Qwen


@torch.no_grad()
def write_activation_cache(
    model, token_seqs: torch.Tensor, out_dir: str | Path, batch_size: int = 8, model_name: str = "", n_heldout: int = 0
) -> ActivationCache:
    """Run the model once over `token_seqs` [N, T] (position 0 = BOS) and write the documented cache.

    Only used when training has not produced a cache; training.activations owns the real one.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n, t = token_seqs.shape
    n_layers = model.config.get_text_config().num_hidden_layers
    d = model.config.get_text_config().hidden_size
    toks = np.memmap(out / "tokens.bin", dtype=np.int32, mode="w+", shape=(n, t))
    toks[:] = token_seqs.numpy().astype(np.int32)
    toks.flush()
    files = {}
    for layer in range(n_layers):
        for kind in ("in", "out"):
            files[(layer, kind)] = np.memmap(
                out / f"layer_{layer}_{kind}.bin", dtype=np.uint16, mode="w+", shape=(n * t, d)
            )
    captured: dict[tuple[int, str], torch.Tensor] = {}
    hooks = []
    for layer in range(n_layers):
        mod_in, mod_out = mlp_input_module(model, layer)
        for kind, mod in (("in", mod_in), ("out", mod_out)):

            def hook(_m, _i, o, key=(layer, kind)):
                captured[key] = (o[0] if isinstance(o, tuple) else o).detach()

            hooks.append(mod.register_forward_hook(hook))
    base = getattr(model, "model", None) or getattr(model, "transformer", None) or model
    manifest = {
        "model": model_name,
        "n_seqs": n,
        "seq_len": t,
        "n_tokens": n * t,
        "layers": list(range(n_layers)),
        "d_model": d,
        "dtype": "bfloat16",
        "complete_seqs": 0,
        "split": {"train": [0, n - n_heldout], "heldout": [n - n_heldout, n]},
        "corpus": {},
    }
    try:
        for s0 in range(0, n, batch_size):
            s1 = min(n, s0 + batch_size)
            base(input_ids=token_seqs[s0:s1])  # the body only: the vocab-wide head is never needed here
            for (layer, kind), act in captured.items():
                rows = act.reshape(-1, d).to(torch.bfloat16).view(torch.uint16).numpy()
                files[(layer, kind)][s0 * t : s1 * t] = rows
            for f in files.values():
                f.flush()
            manifest["complete_seqs"] = s1
            (out / "manifest.json").write_text(json.dumps(manifest))
    finally:
        for h in hooks:
            h.remove()
    return ActivationCache(out)


def corpus_sequences(tokenizer, texts: list[str], seq_len: int, max_tokens: int) -> torch.Tensor:
    """Pack texts into [N, seq_len] rows, each starting with BOS (the cache's convention)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        bos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    stream: list[int] = []
    for text in texts:
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if tokenizer.eos_token_id is not None:
            stream.append(tokenizer.eos_token_id)
    body = seq_len - 1
    n = min(len(stream) // body, max(1, math.ceil(max_tokens / seq_len)))
    if n == 0:
        raise ValueError("corpus too small for one sequence")
    rows = torch.tensor(stream[: n * body], dtype=torch.long).view(n, body)
    return torch.cat([torch.full((n, 1), bos, dtype=torch.long), rows], dim=1)
