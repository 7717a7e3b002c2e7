"""The activation cache: MLP inputs and outputs of every layer, from one forward pass over the corpus.

Format (docs/architecture.md, "Activation cache"; the atlas reads it too): folder with `manifest.json`,
`tokens.bin` (int32 [N, T], position 0 is BOS) and `layer_{l}_in.bin` / `layer_{l}_out.bin` (bf16 bits as
uint16, [N*T, d], row = seq*T + pos). Only the base model (`model.model`) runs, never the output layer, and
the forward stops after the last layer needed. Writes are incremental: `complete_seqs` in the manifest is
updated after each flushed batch, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from circuitboard.training.corpus import iter_passages


def mlp_io_modules(model, layer: int):
    """(module whose output is the MLP input, module whose output is the MLP block's residual contribution)."""
    try:  # the engine's adapters are the single source of truth once they exist
        from circuitboard.engine.adapters import mlp_io_modules as engine_mlp_io

        return engine_mlp_io(model, layer)
    except ImportError:
        pass
    return _mlp_io_fallback(model, layer)


def _mlp_io_fallback(model, layer: int):
    base = getattr(model, "model", model)
    if hasattr(base, "layers"):
        blk = base.layers[layer]
        if hasattr(blk, "pre_feedforward_layernorm"):  # Gemma 2/3: pre- and post-MLP norms
            return blk.pre_feedforward_layernorm, blk.post_feedforward_layernorm
        return blk.post_attention_layernorm, blk.mlp  # Llama, Qwen, Mistral ...
    tr = getattr(model, "transformer", model)
    if hasattr(tr, "h"):  # GPT-2
        return tr.h[layer].ln_2, tr.h[layer].mlp
    raise ValueError(f"don't know the MLP modules of {type(model).__name__}")


def _base_and_layers(model):
    base = getattr(model, "model", None) or getattr(model, "transformer", None) or model
    layers = getattr(base, "layers", None) or base.h
    return base, layers


def load_model(model_dir: Path | str, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"):
    """(model, tokenizer) from a local folder, in bf16 where `device` computes bf16 fast (CUDA; about twice
    fp32's speed with AVX512-BF16) and fp32 where it only emulates it (then 3.6x slower than fp32)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from circuitboard.precision import compute_dtype

    device = torch.device(device)
    dtype = dtype or compute_dtype(device.type)

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).to(device)
    model.eval()
    return model, tok


class _Stop(Exception):
    pass


# ---------------------------------------------------------------------------------------------- tokens


def bos_id(tokenizer) -> int:
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id):
        if tid is not None:
            return int(tid)
    raise ValueError("tokenizer has no BOS/EOS token to start sequences with")


def pack_sequences(tokenizer, texts: Iterator[str], n_seqs: int, seq_len: int) -> np.ndarray:
    """BOS + (seq_len-1) tokens each, from the passages' token stream joined by blank lines."""
    body = seq_len - 1
    need = n_seqs * body
    sep = tokenizer("\n\n", add_special_tokens=False)["input_ids"]
    stream: list[int] = []
    batch: list[str] = []

    def flush():
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            stream.extend(ids)
            stream.extend(sep)
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) >= 256:
            flush()
            if len(stream) >= need:
                break
    if batch and len(stream) < need:
        flush()
    if len(stream) < need:
        raise ValueError(f"corpus too small: {len(stream)} tokens, need {need}")
    out = np.empty((n_seqs, seq_len), dtype=np.int32)
    out[:, 0] = bos_id(tokenizer)
    out[:, 1:] = np.asarray(stream[:need], dtype=np.int32).reshape(n_seqs, body)
    return out


# ---------------------------------------------------------------------------------------------- cache


def read_manifest(cache_dir: Path) -> dict | None:
    p = Path(cache_dir) / "manifest.json"
    return json.loads(p.read_text()) if p.exists() else None


def _write_manifest(cache_dir: Path, m: dict) -> None:
    tmp = Path(cache_dir) / "manifest.json.tmp"
    tmp.write_text(json.dumps(m, indent=2))
    tmp.replace(Path(cache_dir) / "manifest.json")  # atomic: a reader never sees half a manifest


def open_layer(cache_dir: Path, layer: int, side: str, manifest: dict | None = None, mode: str = "r") -> np.memmap:
    """uint16 memmap [N*T, d] of one layer's MLP input ('in') or output ('out'); view as bf16 with
    `torch.from_numpy(arr).view(torch.bfloat16)`."""
    m = manifest or read_manifest(cache_dir)
    return np.memmap(
        Path(cache_dir) / f"layer_{layer}_{side}.bin", dtype=np.uint16, mode=mode, shape=(m["n_tokens"], m["d_model"])
    )


def open_tokens(cache_dir: Path, manifest: dict | None = None, mode: str = "r") -> np.memmap:
    m = manifest or read_manifest(cache_dir)
    return np.memmap(Path(cache_dir) / "tokens.bin", dtype=np.int32, mode=mode, shape=(m["n_seqs"], m["seq_len"]))


def cache_satisfies(m: dict | None, n_train_seqs: int, n_heldout_seqs: int, seq_len: int, layers: list[int]) -> bool:
    """A complete cache at least this large can serve a request (training uses a prefix of each split)."""
    if not m or m["complete_seqs"] < m["n_seqs"] or m["seq_len"] != seq_len:
        return False
    tr, ho = m["split"]["train"], m["split"]["heldout"]
    return tr[1] - tr[0] >= n_train_seqs and ho[1] - ho[0] >= n_heldout_seqs and set(layers) <= set(m["layers"])


def build_activation_cache(
    model,
    tokenizer,
    corpus_dir: Path,
    cache_dir: Path,
    *,
    n_train_tokens: int,
    n_heldout_tokens: int,
    seq_len: int = 128,
    batch_size: int = 8,
    layers: list[int] | None = None,
    model_name: str = "",
    log: Callable[[str], None] = print,
    progress: bool = True,
    flush_every_s: float = 30.0,
) -> dict:
    """Fill (or resume, or reuse) the cache. `model` is a loaded *ForCausalLM; only its base model runs."""
    cache_dir = Path(cache_dir)
    base, blocks = _base_and_layers(model)
    device = next(model.parameters()).device
    n_layers = len(blocks)
    layers = sorted(layers if layers is not None else range(n_layers))
    n_train = math.ceil(n_train_tokens / seq_len)
    n_held = math.ceil(n_heldout_tokens / seq_len)
    m = read_manifest(cache_dir)
    if cache_satisfies(m, n_train, n_held, seq_len, layers):
        log(f"activation cache {cache_dir} already complete ({m['n_tokens']} tokens)")
        return m
    corpus_manifest = json.loads((Path(corpus_dir) / "manifest.json").read_text())
    want = {
        "model": model_name,
        "n_seqs": n_train + n_held,
        "seq_len": seq_len,
        "layers": layers,
        "corpus_sha256": corpus_manifest.get("sha256"),
    }
    resumable = (
        m is not None
        and all(m.get(k) == v for k, v in want.items() if k != "corpus_sha256")
        and m.get("corpus", {}).get("sha256") == want["corpus_sha256"]
    )
    d = model.config.get_text_config().hidden_size
    if not resumable:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for f in cache_dir.glob("*.bin"):
            f.unlink()
        t0 = time.perf_counter()
        train = pack_sequences(tokenizer, (p["text"] for p in iter_passages(corpus_dir, "train")), n_train, seq_len)
        held = pack_sequences(tokenizer, (p["text"] for p in iter_passages(corpus_dir, "heldout")), n_held, seq_len)
        m = {
            "model": model_name,
            "n_seqs": n_train + n_held,
            "seq_len": seq_len,
            "n_tokens": (n_train + n_held) * seq_len,
            "layers": layers,
            "d_model": d,
            "dtype": "bfloat16",
            "complete_seqs": 0,
            "split": {"train": [0, n_train], "heldout": [n_train, n_train + n_held]},
            "corpus": {
                "dir": str(corpus_dir),
                "sha256": corpus_manifest.get("sha256"),
                "sources": [s.get("name") for s in corpus_manifest.get("sources", [])],
            },
            "bos_id": bos_id(tokenizer),
            "position_0": "BOS (excluded from training and statistics)",
        }
        toks = open_tokens(cache_dir, m, mode="w+")
        toks[:n_train] = train
        toks[n_train:] = held
        toks.flush()
        del toks
        for layer in layers:
            for side in ("in", "out"):
                open_layer(cache_dir, layer, side, m, mode="w+").flush()
        _write_manifest(cache_dir, m)
        log(f"tokenised {m['n_tokens']} tokens in {time.perf_counter() - t0:.1f} s")
    else:
        log(f"resuming activation cache at sequence {m['complete_seqs']}/{m['n_seqs']}")

    toks = open_tokens(cache_dir, m)
    mm = {(l, s): open_layer(cache_dir, l, s, m, mode="r+") for l in layers for s in ("in", "out")}
    captured: dict[tuple[int, str], torch.Tensor] = {}
    handles = []
    last = layers[-1]

    def saver(layer: int, side: str):
        def hook(_mod, _inp, out):
            out = out[0] if isinstance(out, tuple) else out
            captured[(layer, side)] = out.detach()
            if side == "out" and layer == last:
                raise _Stop  # nothing after the last needed layer is computed

        return hook

    for layer in layers:
        mod_in, mod_out = mlp_io_modules(model, layer)
        handles.append(mod_in.register_forward_hook(saver(layer, "in")))
        handles.append(mod_out.register_forward_hook(saver(layer, "out")))

    T = seq_len
    start = m["complete_seqs"]
    last_flush = time.monotonic()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=m["n_tokens"], initial=start * T, unit="tok", unit_scale=True, desc="activations", dynamic_ncols=True
        )
    try:
        with torch.inference_mode():
            for s0 in range(start, m["n_seqs"], batch_size):
                s1 = min(s0 + batch_size, m["n_seqs"])
                ids = torch.from_numpy(np.asarray(toks[s0:s1], dtype=np.int64)).to(device)
                captured.clear()
                try:
                    base(input_ids=ids, use_cache=False)
                except _Stop:
                    pass
                for (layer, side), t in captured.items():
                    arr = t.to(torch.bfloat16).reshape(-1, d).cpu().view(torch.int16).numpy().view(np.uint16)
                    mm[(layer, side)][s0 * T : s1 * T] = arr
                # msync of 36 memory maps (~50 MB a batch) only every `flush_every_s`: the disk writes overlap
                # the forward passes, and an interruption loses at most that much work
                if s1 == m["n_seqs"] or time.monotonic() - last_flush > flush_every_s:
                    for a in mm.values():
                        a.flush()
                    m["complete_seqs"] = s1
                    _write_manifest(cache_dir, m)
                    last_flush = time.monotonic()
                if bar is not None:
                    bar.update((s1 - s0) * T)
    finally:
        for h in handles:
            h.remove()
        if bar is not None:
            bar.close()
    return m


def load_rows(
    cache_dir: Path,
    layer: int,
    side: str,
    seq_range: tuple[int, int],
    manifest: dict | None = None,
    drop_bos: bool = True,
) -> torch.Tensor:
    """bf16 tensor of one layer's rows for sequences [s0, s1), position 0 dropped by default."""
    m = manifest or read_manifest(cache_dir)
    T, d = m["seq_len"], m["d_model"]
    s0, s1 = seq_range
    arr = np.asarray(open_layer(cache_dir, layer, side, m)[s0 * T : s1 * T]).reshape(s1 - s0, T, d)
    if drop_bos:
        arr = arr[:, 1:]
    return torch.from_numpy(np.ascontiguousarray(arr).reshape(-1, d)).view(torch.bfloat16)
