"""Build the feature atlas: one streaming pass over the activation cache per layer, all features at once.

Per layer the transcoder encodes chunks of cached MLP inputs (a bf16 matmul, the only heavy op, `encode`);
the activations become sparse (feature, token, value) triplets and every statistic is a vectorised update
over them (`layer_stats`: top activations, a reservoir for quantile examples, a doubling histogram, input
tokens). After the scan the layer's rows are made (`layer_rows`: example windows re-encoded, output tokens
through the final norm gain and the unembedding — over the tokens the corpus contains when the vocabulary
exceeds 65,536, Gemma's 262k, which is ~10x cheaper and keeps labels readable — labels and search text) and
written in one transaction, so resume restarts at the first unfinished layer. Position 0 (BOS) is excluded
everywhere, as in transcoder training.

Speed (Gemma 3 270M: 18 layers, 4096 TopK features, d 640): the bf16 encoder matmul dominates; everything
else runs on ~1e5-element tensors, on one thread (see `encode`).

Device (`device=`, default: the given model's, else the CPU): the encoder, the statistics' tables and the
logit products live there; cached rows are copied to it chunk by chunk. The scan reads back once per chunk (the
compaction of its nonzero activations) and once per layer (its statistics, to make the rows).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from circuitboard.atlas.encode import (
    Encoder,
    ThreadTuner,
    layer_transcoder,
    one_thread,
    open_transcoders,
    transcoders_fingerprint,
)
from circuitboard.atlas.layer_rows import CorpusView, LayerScan, layer_rows, tick
from circuitboard.atlas.layer_stats import LayerStats
from circuitboard.atlas.params import AtlasParams
from circuitboard.atlas.store import AtlasStore
from circuitboard.data.activations import ActivationCache, build_activation_cache, cache_from_texts, load_cache_model
from circuitboard.data.corpus import DEFAULT_CORPUS_DIR
from circuitboard.engine.adapters import HFModel
from circuitboard.engine.head import OutputHead, head_from_folder, head_from_model
from circuitboard.engine.loading import load_model, load_tokenizer
from circuitboard.engine.transcoders import TranscoderSet
from circuitboard.precision import dtype_for

ProgressFn = Callable[[float, float, int], None]  # (tokens done, tokens total, layer)


@dataclass
class BuildResult:
    out_path: Path
    n_layers: int
    n_features: int
    n_tokens: int
    seconds: float
    tokens_per_s: float
    layers_built: list[int]
    timings: dict[str, float] | None = None  # seconds per phase: setup, scan, windows, logits, inputs, rows, write


@dataclass
class _ModelSource:
    """The model as the atlas needs it: its output head and tokenizer (a model only when one was given or
    had to be loaded)."""

    head: OutputHead
    tokenizer: Any
    model: HFModel | None
    name: str  # the atlas's `model` meta
    ref: str | Path | None  # the folder, when given one


@dataclass
class _Build:
    """Everything the per-layer steps share."""

    tset: TranscoderSet
    cache: ActivationCache
    corpus: CorpusView
    head: OutputHead
    W_U: torch.Tensor  # unembedding rows of corpus.logit_ids, in the matmul dtype
    store: AtlasStore
    p: AtlasParams
    timings: dict[str, float]
    tuner: ThreadTuner
    progress: _Progress
    device: torch.device  # where the scan runs


class _Progress:
    """Corpus tokens through *all* layers still to do, so the rate reads as tokens/s."""

    def __init__(self, progress: bool | ProgressFn, n_tok: int, n_layers: int):
        self.fn, self.close = _progress_fn(progress, n_tok)
        self.total, self.n_layers, self.done = n_tok, n_layers, 0.0

    def advance(self, tokens: int, layer: int) -> None:
        self.done += tokens / self.n_layers
        self.fn(self.done, self.total, layer)


def build_atlas(
    model_dir: str | Path | HFModel,
    transcoders_dir: str | Path,
    cache_dir: str | Path,
    out_path: str | Path,
    max_tokens: int | None = None,
    progress: bool | ProgressFn = True,
    resume: bool = True,
    *,
    tokenizer: Any = None,
    params: AtlasParams | None = None,
    layers: list[int] | None = None,
    texts: Iterable[str] | None = None,
    seq_len: int = 128,
    corpus_dir: Path | None = None,
    device: str | torch.device | None = None,
) -> BuildResult:
    """Build (or resume) the atlas SQLite file at `out_path`. See the module docstring for the method.

    `model_dir`: the model folder (only its tokenizer, final norm and unembedding are read), or a loaded
    CausalLM in its place (then pass `tokenizer=`). `texts` / `corpus_dir` are only used when the activation
    cache is missing. `device`: where the scan runs (default: a loaded model's device, else the CPU).
    """
    t_start = time.perf_counter()
    p = params or AtlasParams()
    src = _resolve_model(model_dir, tokenizer)
    dev = torch.device(device) if device is not None else _model_device(src.model)
    cache = _ensure_cache(Path(cache_dir), src, texts, max_tokens, seq_len, corpus_dir)
    tset = open_transcoders(transcoders_dir)
    n_seqs, layer_list = _plan(cache, tset, max_tokens, layers)
    compute = dtype_for(p.precision, dev.type)
    config = _build_config(cache_dir, n_seqs, cache.seq_len, transcoders_dir, src.head.vocab_size, p, compute)
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    store = AtlasStore(out_path, create=True)
    if not resume or store.get_meta("build_hash") != config_hash:
        store.reset_build()
    done = store.done_layers()
    todo = [li for li in layer_list if li not in done]
    corpus = _corpus_view(cache.tokens(n_seqs), src.head, p)
    if not todo:
        store.set_meta("build_hash", config_hash)
        return BuildResult(Path(out_path), len(layer_list), store.n_features(), corpus.n_tok, 0.0, 0.0, [])
    if not done:  # fresh build: sequences and vocabulary text go in once
        _put_corpus(store, corpus, src.tokenizer)
    corpus.vocab_text = dict(zip(corpus.keep_ids.tolist(), store.vocab_text(corpus.keep_ids.tolist()), strict=True))
    _write_meta(store, config_hash, config, src.name, transcoders_dir, tset.n_layers, corpus, p)

    W_U = src.head.W_U[corpus.logit_ids].to(dev, compute)
    bar = _Progress(progress, corpus.n_tok, len(todo))
    b = _Build(tset, cache, corpus, src.head, W_U, store, p, {}, ThreadTuner(), bar, dev)
    b.timings["setup"] = time.perf_counter() - t_start
    t_scan = time.perf_counter()
    try:
        for layer in todo:
            _build_layer(b, layer)
    finally:
        b.progress.close()
    return _finish(b, out_path, t_start, time.perf_counter() - t_scan, layer_list, todo)


# ---------------------------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------------------------


def _resolve_model(model: str | Path | HFModel, tokenizer: Any) -> _ModelSource:
    if isinstance(model, (str, Path)):
        model_dir = Path(model)
        if tokenizer is None:
            tokenizer = load_tokenizer(model_dir)
        try:
            return _ModelSource(head_from_folder(model_dir), tokenizer, None, model_dir.name, model)
        except (FileNotFoundError, KeyError):  # no safetensors to read the head from: load the model
            loaded, _, _ = load_model(model_dir, device="cpu", dtype="float32", pattern_attention=False)
            return _ModelSource(head_from_model(loaded), tokenizer, loaded, model_dir.name, model)
    if tokenizer is None:
        raise ValueError("pass tokenizer= when giving a loaded model")
    name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__)
    # The head is kept on the CPU, as a folder's is; `build_atlas` moves what the scan multiplies to its device.
    head = head_from_model(model)
    head = replace(head, W_U=head.W_U.cpu(), gain=head.gain.cpu())
    return _ModelSource(head, tokenizer, model, name, None)


def _model_device(model: HFModel | None) -> torch.device:
    """A loaded model's device (the scan's default), else the CPU."""
    param = next(model.parameters(), None) if model is not None else None
    return param.device if param is not None else torch.device("cpu")


def _ensure_cache(
    cache_dir: Path,
    src: _ModelSource,
    texts: Iterable[str] | None,
    max_tokens: int | None,
    seq_len: int,
    corpus_dir: Path | None,
) -> ActivationCache:
    """The training cache when it exists; otherwise one model pass over the corpus (or over `texts`)."""
    if ActivationCache.exists(cache_dir):
        return ActivationCache(cache_dir)
    n_tokens = max_tokens or 250_000
    corpus = Path(corpus_dir) if corpus_dir else DEFAULT_CORPUS_DIR
    if texts is None and not (corpus / "manifest.json").is_file():
        raise FileNotFoundError(
            f"no activation cache at {cache_dir} and no corpus to build one from; run "
            "`circuitboard corpus build` (or `circuitboard prepare`) first, or pass texts="
        )
    model = src.model
    if model is None:
        assert src.ref is not None  # a model was neither given nor loaded: it was given as a folder
        model, _ = load_cache_model(src.ref)
    name = str(src.ref) if src.ref is not None else src.name
    if texts is None:
        build_activation_cache(
            model,
            src.tokenizer,
            corpus,
            cache_dir,
            n_train_tokens=n_tokens,
            n_heldout_tokens=0,
            seq_len=seq_len,
            model_name=name,
        )
    else:
        model.eval()
        n_seqs = max(1, math.ceil(n_tokens / seq_len))
        cache_from_texts(model, src.tokenizer, texts, cache_dir, n_seqs=n_seqs, seq_len=seq_len, model_name=name)
    return ActivationCache(cache_dir)


def _plan(
    cache: ActivationCache, tset: TranscoderSet, max_tokens: int | None, layers: list[int] | None
) -> tuple[int, list[int]]:
    """(sequences to scan, layers to build), checked against what the cache holds."""
    T = cache.seq_len
    n_seqs = cache.n_seqs if max_tokens is None else min(cache.n_seqs, max(1, math.ceil(max_tokens / T)))
    if n_seqs == 0:
        raise ValueError(f"activation cache at {cache.path} has no complete sequences")
    layer_list = list(range(tset.n_layers)) if layers is None else sorted(layers)
    missing = [li for li in layer_list if li not in cache.layers]
    if missing:
        raise ValueError(f"activation cache lacks layers {missing}")
    return n_seqs, layer_list


def _build_config(
    cache_dir: str | Path,
    n_seqs: int,
    seq_len: int,
    transcoders_dir: str | Path,
    vocab_size: int,
    p: AtlasParams,
    compute: torch.dtype,
) -> dict:
    """What the atlas is built from: any change (a rebuilt transcoder set too) makes a resumed build restart.
    `compute` is the dtype the scan's matmuls run in, resolved for this device: "auto" is bf16 on a GPU or an
    AMX CPU and fp32 elsewhere, so a build resumed on another machine would otherwise mix layers of both."""
    return {
        "compute_dtype": str(compute),
        "cache": str(Path(cache_dir).resolve()),
        "n_seqs": n_seqs,
        "seq_len": seq_len,
        "transcoders": str(Path(transcoders_dir).resolve()),
        "transcoders_fp": transcoders_fingerprint(transcoders_dir),
        "vocab_size": vocab_size,
        "params": asdict(p),
    }


def _write_meta(
    store: AtlasStore,
    config_hash: str,
    config: dict,
    model_name: str,
    transcoders_dir: str | Path,
    n_layers: int,
    corpus: CorpusView,
    p: AtlasParams,
) -> None:
    store.set_meta("build_hash", config_hash)
    store.set_meta("build_config", config)
    store.set_meta("model", model_name)
    store.set_meta("transcoders", str(transcoders_dir))
    store.set_meta("n_layers", n_layers)
    store.set_meta("n_tokens", corpus.n_tok)
    store.set_meta("seq_len", corpus.seq_len)
    store.set_meta("window", [p.window_before, p.window_after])


def _corpus_view(tokens: torch.Tensor, head: OutputHead, p: AtlasParams) -> CorpusView:
    """The token ids the statistics track (input tokens) and rank over (output tokens)."""
    body_tokens = tokens[:, 1:].reshape(-1)
    corpus_ids, corpus_counts = torch.unique(body_tokens, return_counts=True)
    # Input-token statistics only track the most frequent ids when the corpus vocabulary is huge.
    keep_ids = corpus_ids[torch.argsort(corpus_counts, descending=True)[: p.max_input_vocab]].sort().values
    in_map = torch.full((max(head.vocab_size, int(tokens.max()) + 1),), -1, dtype=torch.int64)
    in_map[keep_ids] = torch.arange(keep_ids.numel())
    if p.logit_vocab == "full" or (p.logit_vocab == "auto" and head.vocab_size <= 65536):
        logit_ids = torch.arange(head.vocab_size)
    else:  # Gemma's 262k vocab: ~12× fewer FLOPs and readable labels, using the tokens the corpus contains
        logit_ids = corpus_ids[corpus_ids < head.vocab_size]
    return CorpusView(tokens, body_tokens.numel(), keep_ids, in_map, logit_ids, {})


def _put_corpus(store: AtlasStore, corpus: CorpusView, tokenizer: Any) -> None:
    store.put_sequences(corpus.tokens.numpy())
    vocab_ids = torch.unique(torch.cat([corpus.tokens.reshape(-1), corpus.logit_ids])).tolist()
    store.put_vocab(dict(zip(vocab_ids, token_texts(tokenizer, vocab_ids), strict=True)))


def token_texts(tokenizer: Any, ids: list[int]) -> list[str]:
    """Readable text of single tokens (decode, not the raw BPE piece: ' Dallas' rather than 'ĠDallas')."""
    if not ids:
        return []
    return list(tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False))


def _progress_fn(progress: bool | ProgressFn, total: float) -> tuple[ProgressFn, Callable[[], None]]:
    if callable(progress):
        return progress, lambda: None
    if not progress:
        return (lambda done, tot, layer: None), lambda: None
    from tqdm import tqdm

    bar = tqdm(
        total=int(total),
        unit="tok",
        unit_scale=True,
        desc="atlas",
        smoothing=0.1,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} tokens [{elapsed}<{remaining}, {rate_fmt}]",
    )
    state = {"last": 0.0}

    def fn(done: float, tot: float, layer: int) -> None:
        done = min(done, float(bar.total))  # float sums may overshoot by a hair
        bar.set_description_str(f"atlas layer {layer}", refresh=False)
        bar.update(done - state["last"])
        state["last"] = done

    return fn, bar.close


# ---------------------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------------------


def _build_layer(b: _Build, layer: int) -> None:
    t_layer = time.perf_counter()
    scan = _scan_layer(b, layer)
    tick(b.timings, "scan", t_layer)
    torch.set_num_threads(b.tuner.best())  # the logit matmuls behave like the encoder's
    rows, search_rows = layer_rows(scan, b.corpus, b.head, b.W_U, b.store, b.p, b.timings)
    torch.set_num_threads(b.tuner.n)
    t_w = time.perf_counter()
    b.store.put_layer(layer, rows, search_rows, time.perf_counter() - t_layer)
    tick(b.timings, "write", t_w)
    b.cache.drop(layer)


def _scan_layer(b: _Build, layer: int) -> LayerScan:
    """Encode the layer's cached MLP inputs chunk by chunk into its statistics."""
    p, tokens = b.p, b.corpus.tokens
    n_seqs, T = tokens.shape
    dev = b.device
    tc = layer_transcoder(b.tset, layer)
    enc = Encoder(tc, p.precision, dev)
    X = b.cache.layer_in(layer)
    seqs_per_chunk = max(1, p.chunk_tokens // T)
    # seeded per layer: a resumed build samples exactly what an uninterrupted one would
    gen = torch.Generator().manual_seed(p.seed * 100_003 + layer)
    stats = LayerStats(tc.d_transcoder, p, b.corpus.keep_ids.numel(), gen, dev)
    kth_all = torch.full((n_seqs * T,), float("inf"), device=dev) if tc.activation == "topk" else None
    tok_c = b.corpus.in_map.to(dev)[tokens.view(-1).to(dev)]  # every cache row's tracked token id
    for s0 in range(0, n_seqs, seqs_per_chunk):
        s1 = min(n_seqs, s0 + seqs_per_chunk)
        x = X[s0 * T : s1 * T].view(s1 - s0, T, -1)[:, 1:].reshape(-1, X.shape[1])
        g_rows = (torch.arange(s0, s1, device=dev).unsqueeze(1) * T + torch.arange(1, T, device=dev)).reshape(-1)
        threads = b.tuner.pick()
        torch.set_num_threads(threads)
        t_enc = time.perf_counter()
        c, f, v, kth = enc.encode(x)
        b.tuner.record(threads, time.perf_counter() - t_enc, x.shape[0])
        torch.set_num_threads(b.tuner.n)
        if kth_all is not None and kth is not None:  # TopK
            kth_all[g_rows] = kth
        with one_thread():
            g = g_rows[c]
            stats.update(f, g, tok_c[g], v)
        b.progress.advance((s1 - s0) * (T - 1), layer)
    return LayerScan(layer, tc, enc, stats.to("cpu"), X, kth_all)  # the layer's one read back


def _finish(
    b: _Build, out_path: str | Path, t_start: float, scan_s: float, layer_list: list[int], todo: list[int]
) -> BuildResult:
    n_tok = b.corpus.n_tok
    seconds = time.perf_counter() - t_start
    tps = n_tok * len(todo) / max(scan_s, 1e-9) / max(len(layer_list), 1)
    b.store.set_meta("built_at", time.time())
    b.store.set_meta("build_seconds", seconds)
    b.store.set_meta("tokens_per_s", tps)
    b.timings["encode_threads"] = b.tuner.best()
    timings = {k: round(v, 2) for k, v in b.timings.items()}
    b.store.set_meta("timings", timings)
    return BuildResult(Path(out_path), len(layer_list), b.store.n_features(), n_tok, seconds, tps, todo, timings)
