"""The activation cache: MLP inputs and outputs of every layer, from one forward pass over a corpus.

Format (docs/architecture.md, "Activation cache"): folder with `manifest.json`, `tokens.bin` (int32 [N, T],
position 0 is BOS) and `layer_{l}_in.bin` / `layer_{l}_out.bin` (bf16 bits as uint16, [N*T, d], row =
seq*T + pos). Training and the atlas both read it. Only the model's body runs, never the output layer, and
the forward stops after the last layer needed. Writes are incremental: `complete_seqs` in the manifest is
updated at each flush, so an interrupted build resumes where it stopped.

This module is the cache's only writer (`build_activation_cache` from a corpus folder, `cache_from_texts`
from a list of texts: both pack with `pack_sequences` and fill through `_fill`) and its only reader
(`read_manifest`, `open_tokens`, `open_layer`, `load_rows` / `load_sequences`, and `ActivationCache` for the
atlas).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from circuitboard.data.corpus import iter_passages
from circuitboard.engine.adapters import HFModel, body, decoder_layers, mlp_io_modules
from circuitboard.engine.loading import bos_token_id, load_model
from circuitboard.precision import compute_dtype

Side = Literal["in", "out"]
Mode = Literal["r", "r+", "w+", "c"]
SIDES: tuple[Side, Side] = ("in", "out")


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Cached CPU rows onto the device that trains or scans on them: through pinned memory and without blocking
    on a GPU (the copy overlaps the work already queued); a plain `.to` elsewhere."""
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def load_cache_model(model_dir: Path | str, device: str | torch.device = "cpu") -> tuple[HFModel, Any]:
    """(model, tokenizer) for filling the cache: bf16 where `device` computes bf16 fast (CUDA; about twice
    fp32's speed with AVX512-BF16) and fp32 where it only emulates it (then 3.6x slower than fp32)."""
    device = torch.device(device)
    model, tokenizer, _ = load_model(
        model_dir, device=device, dtype=compute_dtype(device.type), pattern_attention=False
    )
    return model, tokenizer


# ---------------------------------------------------------------------------------------------- tokens


def bos_id(tokenizer: Any) -> int:
    """The engine's BOS rule (`bos_token_id`), required: every cached sequence starts with it."""
    bos = bos_token_id(tokenizer)
    if bos is None:
        raise ValueError("tokenizer has no BOS/EOS token to start sequences with")
    return bos


def pack_sequences(
    tokenizer: Any, texts: Iterable[str], n_seqs: int, seq_len: int, *, allow_fewer: bool = False
) -> np.ndarray:
    """BOS + (seq_len-1) tokens each, from the passages' token stream joined by blank lines. Too few tokens
    for `n_seqs` sequences is an error, unless `allow_fewer` (then as many whole sequences as there are)."""
    body_len = seq_len - 1
    need = n_seqs * body_len
    sep = tokenizer("\n\n", add_special_tokens=False)["input_ids"]
    stream: list[int] = []
    batch: list[str] = []

    def flush() -> None:
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
    if len(stream) < need and allow_fewer and len(stream) >= body_len:
        n_seqs = len(stream) // body_len
        need = n_seqs * body_len
    if len(stream) < need:
        raise ValueError(f"corpus too small: {len(stream)} tokens, need {need}")
    out = np.empty((n_seqs, seq_len), dtype=np.int32)
    out[:, 0] = bos_id(tokenizer)
    out[:, 1:] = np.asarray(stream[:need], dtype=np.int32).reshape(n_seqs, body_len)
    return out


# ---------------------------------------------------------------------------------------------- reading


def read_manifest(cache_dir: Path | str) -> dict | None:
    p = Path(cache_dir) / "manifest.json"
    return json.loads(p.read_text()) if p.exists() else None


def _manifest(cache_dir: Path | str, manifest: dict | None) -> dict:
    m = manifest or read_manifest(cache_dir)
    if m is None:
        raise FileNotFoundError(f"no activation cache at {cache_dir} (manifest.json missing)")
    return m


def open_layer(
    cache_dir: Path | str, layer: int, side: Side | str, manifest: dict | None = None, mode: Mode = "r"
) -> np.memmap:
    """uint16 memmap [N*T, d] of one layer's MLP input ('in') or output ('out'); view as bf16 with
    `torch.from_numpy(arr).view(torch.bfloat16)`."""
    m = _manifest(cache_dir, manifest)
    path = Path(cache_dir) / f"layer_{layer}_{side}.bin"
    return np.memmap(path, dtype=np.uint16, mode=mode, shape=(m["n_tokens"], m["d_model"]))


def open_tokens(cache_dir: Path | str, manifest: dict | None = None, mode: Mode = "r") -> np.memmap:
    m = _manifest(cache_dir, manifest)
    return np.memmap(Path(cache_dir) / "tokens.bin", dtype=np.int32, mode=mode, shape=(m["n_seqs"], m["seq_len"]))


def load_rows(
    cache_dir: Path | str,
    layer: int,
    side: Side | str,
    seq_range: tuple[int, int],
    manifest: dict | None = None,
    drop_bos: bool = True,
) -> torch.Tensor:
    """bf16 tensor of one layer's rows for sequences [s0, s1), position 0 dropped by default."""
    m = _manifest(cache_dir, manifest)
    T, d = m["seq_len"], m["d_model"]
    s0, s1 = seq_range
    arr = np.asarray(open_layer(cache_dir, layer, side, m)[s0 * T : s1 * T]).reshape(s1 - s0, T, d)
    if drop_bos:
        arr = arr[:, 1:]
    return torch.from_numpy(np.ascontiguousarray(arr).reshape(-1, d)).view(torch.bfloat16)


def load_sequences(
    cache_dir: Path | str,
    layer: int,
    side: Side | str,
    seq_ids: np.ndarray,
    manifest: dict | None = None,
    drop_bos: bool = True,
) -> torch.Tensor:
    """bf16 tensor of one layer's rows for the given sequences (in that order), position 0 dropped by default:
    what a trainer that needs every layer at once reads a random chunk of the train split with."""
    m = _manifest(cache_dir, manifest)
    T, d = m["seq_len"], m["d_model"]
    arr = open_layer(cache_dir, layer, side, m).reshape(-1, T, d)[np.asarray(seq_ids)]
    if drop_bos:
        arr = arr[:, 1:]
    return torch.from_numpy(np.ascontiguousarray(arr).reshape(-1, d)).view(torch.bfloat16)


def cache_satisfies(m: dict | None, n_train_seqs: int, n_heldout_seqs: int, seq_len: int, layers: list[int]) -> bool:
    """A complete cache at least this large can serve a request (training uses a prefix of each split)."""
    if not m or m["complete_seqs"] < m["n_seqs"] or m["seq_len"] != seq_len:
        return False
    tr, ho = m["split"]["train"], m["split"]["heldout"]
    return tr[1] - tr[0] >= n_train_seqs and ho[1] - ho[0] >= n_heldout_seqs and set(layers) <= set(m["layers"])


class ActivationCache:
    """Read-only view of a cache as the atlas scans it: complete sequences only, MLP inputs as bf16 tensors."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = _manifest(self.path, None)
        self.seq_len = int(self.manifest["seq_len"])
        self.d_model = int(self.manifest["d_model"])
        self.layers = [int(x) for x in self.manifest["layers"]]
        # An interrupted cache build leaves `complete_seqs` < n_seqs; only those rows are valid.
        self.n_seqs = int(self.manifest.get("complete_seqs", self.manifest["n_seqs"]))
        if self.manifest.get("dtype", "bfloat16") != "bfloat16":
            raise ValueError(f"activation cache dtype {self.manifest.get('dtype')!r} unsupported (need bfloat16)")
        self._tokens = open_tokens(self.path, self.manifest)
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
            mm = open_layer(self.path, layer, "in", self.manifest, mode="c")
            self._layer_in[layer] = torch.from_numpy(mm).view(torch.bfloat16)
        return self._layer_in[layer]

    def drop(self, layer: int) -> None:
        self._layer_in.pop(layer, None)


# ---------------------------------------------------------------------------------------------- writing


def _write_manifest(cache_dir: Path, m: dict) -> None:
    tmp = cache_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(m, indent=2))
    tmp.replace(cache_dir / "manifest.json")  # atomic: a reader never sees half a manifest


def _create(cache_dir: Path, tokens: np.ndarray, m: dict) -> dict:
    """Start a fresh cache: tokens written, layer files allocated, nothing computed (`complete_seqs` 0)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    for f in cache_dir.glob("*.bin"):
        f.unlink()
    toks = open_tokens(cache_dir, m, mode="w+")
    toks[:] = tokens
    toks.flush()
    del toks
    for layer in m["layers"]:
        for side in SIDES:
            open_layer(cache_dir, layer, side, m, mode="w+").flush()
    _write_manifest(cache_dir, m)
    return m


def _new_manifest(
    model: HFModel, tokenizer: Any, n_train: int, n_held: int, seq_len: int, layers: list[int], model_name: str
) -> dict:
    return {
        "model": model_name,
        "n_seqs": n_train + n_held,
        "seq_len": seq_len,
        "n_tokens": (n_train + n_held) * seq_len,
        "layers": layers,
        "d_model": model.config.get_text_config().hidden_size,
        "dtype": "bfloat16",
        "complete_seqs": 0,
        "split": {"train": [0, n_train], "heldout": [n_train, n_train + n_held]},
        "corpus": {},
        "bos_id": bos_id(tokenizer),
        "position_0": "BOS (excluded from training and statistics)",
    }


class _Stop(Exception):
    pass


@contextmanager
def _captured(model: HFModel, layers: list[int]) -> Iterator[dict[tuple[int, Side], torch.Tensor]]:
    """Forward hooks that keep each layer's MLP input and output; the forward stops after the last layer."""
    captured: dict[tuple[int, Side], torch.Tensor] = {}
    last = layers[-1]

    def saver(layer: int, side: Side) -> Callable[..., None]:
        def hook(_mod: torch.nn.Module, _inp: Any, out: Any) -> None:
            out = out[0] if isinstance(out, tuple) else out
            captured[(layer, side)] = out.detach()
            if side == "out" and layer == last:
                raise _Stop  # nothing after the last needed layer is computed

        return hook

    handles = []
    for layer in layers:
        for side, mod in zip(SIDES, mlp_io_modules(model, layer), strict=True):
            handles.append(mod.register_forward_hook(saver(layer, side)))
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


def _progress_bar(progress: bool, m: dict) -> Any:
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(
        total=m["n_tokens"],
        initial=m["complete_seqs"] * m["seq_len"],
        unit="tok",
        unit_scale=True,
        desc="activations",
        dynamic_ncols=True,
    )


def _fill(model: HFModel, cache_dir: Path, m: dict, *, batch_size: int, progress: bool, flush_every_s: float) -> dict:
    """Run the model's body over the sequences not yet complete and store every captured layer."""
    T, d = m["seq_len"], m["d_model"]
    device = next(model.parameters()).device
    base = body(model)
    toks = open_tokens(cache_dir, m)
    mm = {(layer, s): open_layer(cache_dir, layer, s, m, mode="r+") for layer in m["layers"] for s in SIDES}
    last_flush = time.monotonic()
    bar = _progress_bar(progress, m)
    try:
        with _captured(model, m["layers"]) as captured, torch.inference_mode():
            for s0 in range(m["complete_seqs"], m["n_seqs"], batch_size):
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
        if bar is not None:
            bar.close()
    return m


def _resumable(m: dict | None, want: dict, corpus_sha: object) -> bool:
    """An unfinished cache of exactly this request (model, size, layers, corpus) continues where it stopped."""
    return (
        m is not None
        and all(m.get(k) == v for k, v in want.items())
        and m.get("corpus", {}).get("sha256") == corpus_sha
    )


def build_activation_cache(
    model: HFModel,
    tokenizer: Any,
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
    """Fill (or resume, or reuse) the cache from a corpus folder's train and held-out splits. `model` is a
    loaded *ForCausalLM; only its body runs."""
    cache_dir = Path(cache_dir)
    layers = sorted(layers if layers is not None else range(len(decoder_layers(model))))
    n_train = math.ceil(n_train_tokens / seq_len)
    n_held = math.ceil(n_heldout_tokens / seq_len)
    m = read_manifest(cache_dir)
    if m is not None and cache_satisfies(m, n_train, n_held, seq_len, layers):
        log(f"activation cache {cache_dir} already complete ({m['n_tokens']} tokens)")
        return m
    corpus_manifest = json.loads((Path(corpus_dir) / "manifest.json").read_text())
    want = {"model": model_name, "n_seqs": n_train + n_held, "seq_len": seq_len, "layers": layers}
    if m is not None and _resumable(m, want, corpus_manifest.get("sha256")):
        log(f"resuming activation cache at sequence {m['complete_seqs']}/{m['n_seqs']}")
    else:
        t0 = time.perf_counter()
        m = _new_manifest(model, tokenizer, n_train, n_held, seq_len, layers, model_name)
        m["corpus"] = {
            "dir": str(corpus_dir),
            "sha256": corpus_manifest.get("sha256"),
            "sources": [s.get("name") for s in corpus_manifest.get("sources", [])],
        }
        train = pack_sequences(tokenizer, (p["text"] for p in iter_passages(corpus_dir, "train")), n_train, seq_len)
        held = pack_sequences(tokenizer, (p["text"] for p in iter_passages(corpus_dir, "heldout")), n_held, seq_len)
        _create(cache_dir, np.concatenate([train, held]), m)
        log(f"tokenised {m['n_tokens']} tokens in {time.perf_counter() - t0:.1f} s")
    return _fill(model, cache_dir, m, batch_size=batch_size, progress=progress, flush_every_s=flush_every_s)


def cache_from_texts(
    model: HFModel,
    tokenizer: Any,
    texts: Iterable[str],
    cache_dir: Path,
    *,
    n_seqs: int,
    seq_len: int = 128,
    batch_size: int = 8,
    model_name: str = "",
    progress: bool = False,
    n_heldout: int = 0,
) -> dict:
    """A fresh cache of every layer over at most `n_seqs` packed sequences of `texts`; the last `n_heldout` of
    them are the held-out split, the others the train split."""
    tokens = pack_sequences(tokenizer, texts, n_seqs, seq_len, allow_fewer=True)
    if not 0 <= n_heldout < len(tokens):
        raise ValueError(f"n_heldout must leave train sequences: {n_heldout} of {len(tokens)}")
    layers = list(range(len(decoder_layers(model))))
    m = _new_manifest(model, tokenizer, len(tokens) - n_heldout, n_heldout, seq_len, layers, model_name)
    _create(Path(cache_dir), tokens, m)
    return _fill(model, Path(cache_dir), m, batch_size=batch_size, progress=progress, flush_every_s=30.0)
