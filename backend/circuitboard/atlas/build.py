"""Build the feature atlas: one streaming pass over the activation cache per layer, all features at once.

Per layer the transcoder encodes chunks of cached MLP inputs (a bf16 matmul, the only heavy op); the
activations are turned into sparse (feature, token, value) triplets and every statistic is a vectorised
update over those triplets:

- top activations: candidates above their feature's current K-th best are sorted (feature, value) and
  merged row-wise into a [F, K] table — after the first chunks almost nothing passes the filter;
- quantile examples: a uniform reservoir sample (largest random keys) the same way, from which examples at
  evenly spaced activation quantiles are picked;
- histogram: exact counts in 64 equal bins over [0, 2^e_f], doubling the range (merging bin pairs) whenever a
  feature's maximum grows — one pass, no second read of the cache;
- input tokens: activation mass per (feature, token id) in a dense table over the corpus' token ids.

After the scan, example windows are re-encoded for their own feature only (a gathered batched dot product)
to get per-token activations, output tokens come from the decoder rows through the final norm gain and the
unembedding (over the tokens the corpus contains when the vocabulary exceeds 65,536 — Gemma's 262k — which
is ~10x cheaper and keeps labels readable), and the layer is written in one transaction (so resume restarts
at the first unfinished layer). Position 0 (BOS) is excluded everywhere, as in transcoder training.

Speed (Gemma 3 270M: 18 layers, 4096 TopK features, d 640): the bf16 encoder matmul dominates; everything
else runs on ~1e5-element tensors. Small ops run on one thread, and the encoder picks all threads or one by
timing both (on 2 shared cores, OpenMP stalls made multi-threaded small ops 10-50x slower).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from circuitboard.atlas import labels as labels_mod
from circuitboard.atlas.sources import (
    ActivationCache,
    LayerTranscoder,
    OutputHead,
    TranscoderSet,
    corpus_sequences,
    head_from_folder,
    head_from_model,
    token_texts,
    write_activation_cache,
)
from circuitboard.atlas.store import AtlasStore, pack_examples
from circuitboard.precision import dtype_for

ProgressFn = Callable[[float, float, int], None]  # (tokens done, tokens total, layer)


@dataclass
class AtlasParams:
    n_top: int = 20  # top-activating contexts kept per feature
    n_reservoir: int = 32  # uniform reservoir from which quantile examples are drawn
    n_bands: int = 4  # quantile bands below the top examples
    per_band: int = 3  # examples per band
    window_before: int = 12  # tokens of context before the activating token
    window_after: int = 4
    n_logits: int = 10
    n_inputs: int = 8
    hist_bins: int = 64  # must be a power of two (the doubling histogram merges bin pairs)
    chunk_tokens: int = 4096
    precision: str = "auto"  # "auto" (bf16 where this machine computes it fast: CUDA, AVX512-BF16/AMX), "bf16", "fp32"
    logit_vocab: str = "auto"  # "full" | "corpus" | "auto" (full vocab when ≤ 65,536 tokens)
    max_input_vocab: int = 16384  # cap on distinct token ids tracked for input-token statistics
    seed: int = 0


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


# ---------------------------------------------------------------------------------------------------------
# Vectorised helpers
# ---------------------------------------------------------------------------------------------------------


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run small (~1e5-element) ops on one thread. On 2 cores shared with other processes every OpenMP
    region waits for a scheduler slice, which made these ops 10-50x slower than single-threaded; the big
    matmuls and top-ks stay multi-threaded."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class _ThreadTuner:
    """Chooses, for the encoder's matmul + top-k, between all threads and one thread by timing both.

    On a quiet machine all threads are ~2x faster; when other processes hold the cores, OpenMP regions
    stall and one thread wins. Every `period` chunks both settings are timed once more (contention comes
    and goes), and the faster one by a running average is used for the rest.
    """

    def __init__(self, period: int = 16):
        self.n = torch.get_num_threads()
        self.period = period
        self.avg: dict[int, float] = {}
        self.i = 0

    def pick(self) -> int:
        if self.n == 1:
            return 1
        if self.n not in self.avg:
            return self.n
        if 1 not in self.avg:
            return 1
        phase = self.i % self.period
        return self.n if phase == 0 else 1 if phase == 1 else self.best()

    def best(self) -> int:
        return min(self.avg, key=self.avg.get) if self.avg else self.n

    def record(self, threads: int, seconds: float, per: float) -> None:
        self.i += 1
        if self.i == 1:
            return  # the first chunk pays one-off allocation costs: not a fair sample
        rate = seconds / max(per, 1.0)
        prev = self.avg.get(threads)
        self.avg[threads] = rate if prev is None else 0.5 * prev + 0.5 * rate


class _Encoder:
    """Transcoder encoding of cached MLP inputs to sparse triplets, plus single-feature re-encoding."""

    def __init__(self, tc: LayerTranscoder, precision: str):
        self.tc = tc
        self.dtype = dtype_for(precision)
        self.W = tc.W_enc.to(self.dtype).contiguous()
        self.b = tc.b_enc.float()
        self.thr = tc.threshold.float() if tc.threshold is not None else None

    def encode(self, x: torch.Tensor) -> tuple:
        """x [C, d] -> (c, f, v, kth): token index, feature and value of every nonzero activation, and for
        TopK the per-token k-th pre-activation (to re-derive window activations later)."""
        x = x.to(self.dtype)
        if self.tc.activation == "topk":
            # bias inside the matmul (addmm) and top-k straight on its output: no [C, F] float copy
            pre = torch.addmm(self.b.to(self.dtype), x, self.W.T)
            k = min(self.tc.k or 1, pre.shape[1])
            v, f = pre.topk(k, dim=1)
            with _one_thread():
                v = v.float()
                kth = v[:, -1].clone()
                c = torch.arange(pre.shape[0]).repeat_interleave(k)
                v, f = v.reshape(-1), f.reshape(-1)
                nz = v > 0
                return c[nz], f[nz], v[nz], kth
        act = torch.addmm(self.b.to(self.dtype).unsqueeze(1), self.W, x.T).float()
        if self.thr is not None:  # JumpReLU: a * (a > θ)
            act = torch.where((act > self.thr.unsqueeze(1)) & (act > 0), act, torch.zeros(()))
        else:
            act.clamp_min_(0)
        f, c = act.nonzero(as_tuple=True)
        return c, f, act[f, c], None

    def encode_windows(self, x: torch.Tensor, f0: int, kth: torch.Tensor | None) -> torch.Tensor:
        """x [n, S, W, d] windows of features f0..f0+n-1 -> their own activations [n, S, W].

        Feature-major blocks: one bmm per block against the block's encoder rows, no per-example gather of
        encoder rows."""
        n, S, W, d = x.shape
        w = self.W[f0 : f0 + n].unsqueeze(2)  # [n, d, 1]
        pre = torch.bmm(x.view(n, S * W, d).to(self.dtype), w).view(n, S, W).float()
        pre += self.b[f0 : f0 + n].view(n, 1, 1)
        if self.tc.activation == "topk":
            assert kth is not None
            return torch.where((pre >= kth) & (pre > 0), pre, torch.zeros(()))
        if self.thr is not None:
            thr = self.thr[f0 : f0 + n].view(n, 1, 1)
            return torch.where((pre > thr) & (pre > 0), pre, torch.zeros(()))
        return pre.clamp_min(0)


def _candidates_topk(
    f: torch.Tensor, key: torch.Tensor, payload: list[torch.Tensor], F: int, K: int, floor: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]] | None:
    """Per-row top-K of sparse candidates (row f, key) as dense [F, K] tables (-inf / -1 padded).

    Candidates not above their row's current K-th best (`floor`) are dropped first: after the first chunks
    almost all are, so the two sorts run on a handful of entries.
    """
    keep = key > floor[f]
    if not bool(keep.any()):
        return None
    f, key = f[keep], key[keep]
    payload = [p[keep] for p in payload]
    key_s, order = key.sort(descending=True)
    f_s, order2 = f[order].sort(stable=True)  # grouped by row, descending key within a row
    order = order[order2]
    key_s = key_s[order2]
    counts = torch.bincount(f_s, minlength=F)
    rank = torch.arange(f_s.numel()) - (counts.cumsum(0) - counts)[f_s]
    sel = rank < K
    rows, cols = f_s[sel], rank[sel]
    out_k = torch.full((F, K), float("-inf"))
    out_k[rows, cols] = key_s[sel]
    outs = []
    for p in payload:
        t = torch.full((F, K), -1, dtype=p.dtype) if p.dtype == torch.int64 else torch.zeros(F, K, dtype=p.dtype)
        t[rows, cols] = p[order][sel]
        outs.append(t)
    return out_k, outs


def _merge_rows(
    key: torch.Tensor, payload: list[torch.Tensor], new_key: torch.Tensor, new_payload: list[torch.Tensor]
) -> None:
    """Row-wise merge of two [F, K] top tables (dense, no sorting of anything but 2K columns)."""
    K = key.shape[1]
    allk = torch.cat([key, new_key], 1)
    v, i = allk.topk(K, dim=1)
    key.copy_(v)
    for t, n in zip(payload, new_payload, strict=True):
        t.copy_(torch.cat([t, n], 1).gather(1, i))


class _LayerStats:
    """All per-feature accumulators of one layer (see the module docstring)."""

    def __init__(self, F: int, p: AtlasParams, n_in_vocab: int, gen: torch.Generator):
        self.F, self.p, self.gen = F, p, gen
        self.count = torch.zeros(F, dtype=torch.int64)
        self.sum = torch.zeros(F, dtype=torch.float64)
        self.top_v = torch.full((F, p.n_top), float("-inf"))
        self.top_g = torch.full((F, p.n_top), -1, dtype=torch.int64)
        self.res_k = torch.full((F, p.n_reservoir), float("-inf"))
        self.res_v = torch.zeros(F, p.n_reservoir)
        self.res_g = torch.full((F, p.n_reservoir), -1, dtype=torch.int64)
        self.nb = p.hist_bins
        self.hist = torch.zeros(F, self.nb, dtype=torch.int64)
        self.hist_e = torch.full((F,), -126, dtype=torch.int64)  # range of feature f is [0, 2^e_f]
        self.n_in = n_in_vocab
        self.in_sum = torch.zeros(F * n_in_vocab, dtype=torch.float32)
        self.in_cnt = torch.zeros(F * n_in_vocab, dtype=torch.int32)

    def update(self, f: torch.Tensor, g: torch.Tensor, tok_c: torch.Tensor, v: torch.Tensor) -> None:
        """One chunk of nonzero activations: feature f, global cache row g, compact token id tok_c (-1 =
        untracked), value v."""
        F = self.F
        if f.numel() == 0:
            return
        self.count += torch.bincount(f, minlength=F)
        self.sum += torch.bincount(f, weights=v.double(), minlength=F)
        new = _candidates_topk(f, v, [g], F, self.p.n_top, self.top_v[:, -1])
        if new is not None:
            _merge_rows(self.top_v, [self.top_g], new[0], new[1])
        # uniform reservoir: the R activations with the largest random keys are a uniform sample of the
        # feature's activations, so evenly spaced picks from it sit at evenly spaced quantiles
        u = torch.rand(v.shape, generator=self.gen)
        new = _candidates_topk(f, u, [v, g], F, self.p.n_reservoir, self.res_k[:, -1])
        if new is not None:
            _merge_rows(self.res_k, [self.res_v, self.res_g], new[0], new[1])
        self._hist_update(f, v)
        keep = tok_c >= 0
        flat = f[keep] * self.n_in + tok_c[keep]
        self.in_sum.index_add_(0, flat, v[keep])
        self.in_cnt.index_add_(0, flat, torch.ones_like(flat, dtype=torch.int32))

    def _hist_update(self, f: torch.Tensor, v: torch.Tensor) -> None:
        nb = self.nb
        cmax = torch.zeros(self.F).scatter_reduce_(0, f, v, reduce="amax")
        grown = cmax > torch.pow(2.0, self.hist_e.float())  # only features whose range must double
        if bool(grown.any()):
            rows = grown.nonzero().squeeze(1)
            need = torch.ceil(torch.log2(cmax[rows].double())).long()
            grow = need - self.hist_e[rows]
            # Doubling the range merges bin pairs; after log2(nb)+1 doublings all counts sit in bin 0.
            for j in range(min(int(grow.max()), int(math.log2(nb)) + 1)):
                sub = rows[grow > j]
                h = self.hist[sub].view(-1, nb // 2, 2).sum(-1)
                self.hist[sub] = torch.cat([h, torch.zeros_like(h)], dim=1)
            self.hist_e[rows] = need
        inv = torch.pow(2.0, (-self.hist_e).float()) * nb
        b = (v * inv[f]).long().clamp_(0, nb - 1)
        self.hist.view(-1).index_add_(0, f * nb + b, torch.ones_like(b))


# ---------------------------------------------------------------------------------------------------------
# The build
# ---------------------------------------------------------------------------------------------------------


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


def _resolve_model(model_dir_or_model, tokenizer):
    """(OutputHead, tokenizer, model or None, name) from a folder path or a loaded model."""
    if isinstance(model_dir_or_model, (str, Path)):
        model_dir = Path(model_dir_or_model)
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        try:
            head = head_from_folder(model_dir)
            model = None
        except (FileNotFoundError, KeyError):
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
            head = head_from_model(model)
        return head, tokenizer, model, model_dir.name
    model = model_dir_or_model
    if tokenizer is None:
        raise ValueError("pass tokenizer= when giving a loaded model")
    name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__)
    return head_from_model(model), tokenizer, model, name


def _ensure_cache(
    cache_dir: Path, model_dir_or_model, model, tokenizer, texts, max_tokens, seq_len, corpus_dir: Path | None
) -> ActivationCache:
    """The training cache when it exists; otherwise one model pass (training's writer over its corpus, or
    our small writer over `texts`)."""
    if ActivationCache.exists(cache_dir):
        return ActivationCache(cache_dir)
    n_tokens = max_tokens or 250_000
    if texts is None:
        try:
            from circuitboard.training.activations import build_activation_cache, load_model
            from circuitboard.training.corpus import DEFAULT_CORPUS_DIR
        except ImportError:
            build_activation_cache = None
        corpus = Path(corpus_dir) if corpus_dir else (DEFAULT_CORPUS_DIR if build_activation_cache else None)
        if build_activation_cache is None or corpus is None or not (corpus / "manifest.json").is_file():
            raise FileNotFoundError(
                f"no activation cache at {cache_dir} and no corpus to build one from; run "
                "`circuitboard corpus build` (or `circuitboard prepare`) first, or pass texts="
            )
        if model is None:
            model = load_model(model_dir_or_model)
        build_activation_cache(
            model,
            tokenizer,
            corpus,
            cache_dir,
            n_train_tokens=n_tokens,
            n_heldout_tokens=0,
            seq_len=seq_len,
            model_name=str(model_dir_or_model),
        )
        return ActivationCache(cache_dir)
    if model is None:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(model_dir_or_model), dtype=torch.float32)
    model.eval()
    seqs = corpus_sequences(tokenizer, list(texts), seq_len, n_tokens)
    return write_activation_cache(model, seqs, cache_dir, model_name=str(model_dir_or_model))


def build_atlas(
    model_dir_or_model=None,
    transcoders_dir=None,
    cache_dir=None,
    out_path=None,
    max_tokens: int | None = None,
    progress: bool | ProgressFn = True,
    resume: bool = True,
    *,
    tokenizer=None,
    params: AtlasParams | None = None,
    layers: list[int] | None = None,
    texts=None,
    seq_len: int = 128,
    corpus_dir: Path | None = None,
    model_dir=None,
) -> BuildResult:
    """Build (or resume) the atlas SQLite file at `out_path`. See the module docstring for the method.

    `model_dir_or_model`: a model folder (only its tokenizer, final norm and unembedding are read) or a
    loaded CausalLM (then pass `tokenizer=`). `model_dir` is an alias for callers that pass by name.
    `texts` / `corpus_dir` are only used when the activation cache is missing.
    """
    t_start = time.perf_counter()
    model_dir_or_model = model_dir_or_model if model_dir_or_model is not None else model_dir
    if model_dir_or_model is None or transcoders_dir is None or cache_dir is None or out_path is None:
        raise TypeError("build_atlas needs model_dir_or_model, transcoders_dir, cache_dir and out_path")
    p = params or AtlasParams()
    head, tokenizer, model, model_name = _resolve_model(model_dir_or_model, tokenizer)
    cache = _ensure_cache(Path(cache_dir), model_dir_or_model, model, tokenizer, texts, max_tokens, seq_len, corpus_dir)
    tset = TranscoderSet(transcoders_dir)
    T = cache.seq_len
    n_seqs = cache.n_seqs if max_tokens is None else min(cache.n_seqs, max(1, math.ceil(max_tokens / T)))
    if n_seqs == 0:
        raise ValueError(f"activation cache at {cache.path} has no complete sequences")
    layer_list = list(range(tset.n_layers)) if layers is None else sorted(layers)
    missing = [li for li in layer_list if li not in cache.layers]
    if missing:
        raise ValueError(f"activation cache lacks layers {missing}")

    config = {
        "cache": str(Path(cache_dir).resolve()),
        "n_seqs": n_seqs,
        "seq_len": T,
        "transcoders": str(Path(transcoders_dir).resolve()),
        "transcoders_fp": tset.fingerprint(),
        "vocab_size": head.vocab_size,
        "params": asdict(p),
    }
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    store = AtlasStore(out_path, create=True)
    if not resume or store.get_meta("build_hash") != config_hash:
        store.reset_build()
    done = store.done_layers()
    todo = [li for li in layer_list if li not in done]

    tokens = cache.tokens(n_seqs)  # [n_seqs, T] int64
    body_tokens = tokens[:, 1:].reshape(-1)
    n_tok = body_tokens.numel()
    corpus_ids, corpus_counts = torch.unique(body_tokens, return_counts=True)
    # Input-token statistics only track the most frequent ids when the corpus vocabulary is huge.
    keep_ids = corpus_ids[torch.argsort(corpus_counts, descending=True)[: p.max_input_vocab]].sort().values
    in_map = torch.full((max(head.vocab_size, int(tokens.max()) + 1),), -1, dtype=torch.int64)
    in_map[keep_ids] = torch.arange(keep_ids.numel())
    if p.logit_vocab == "full" or (p.logit_vocab == "auto" and head.vocab_size <= 65536):
        logit_ids = torch.arange(head.vocab_size)
    else:  # Gemma's 262k vocab: ~12× fewer FLOPs and readable labels, using the tokens the corpus contains
        logit_ids = corpus_ids[corpus_ids < head.vocab_size]

    if not todo:
        store.set_meta("build_hash", config_hash)
        return BuildResult(Path(out_path), len(layer_list), store.n_features(), n_tok, 0.0, 0.0, [])

    if not done:  # fresh build: sequences and vocabulary text go in once
        store.put_sequences(tokens.numpy())
        vocab_ids = torch.unique(torch.cat([tokens.reshape(-1), logit_ids])).tolist()
        store.put_vocab(dict(zip(vocab_ids, token_texts(tokenizer, vocab_ids), strict=True)))
    vocab_text = dict(zip(keep_ids.tolist(), store.vocab_text(keep_ids.tolist()), strict=True))

    store.set_meta("build_hash", config_hash)
    store.set_meta("build_config", config)
    store.set_meta("model", model_name)
    store.set_meta("transcoders", str(transcoders_dir))
    store.set_meta("n_layers", tset.n_layers)
    store.set_meta("n_tokens", n_tok)
    store.set_meta("seq_len", T)
    store.set_meta("window", [p.window_before, p.window_after])

    W_U = head.W_U[logit_ids].to(dtype_for(p.precision))
    report, close = _progress_fn(progress, n_tok)
    tuner = _ThreadTuner()
    timings: dict[str, float] = {"setup": time.perf_counter() - t_start}
    done_tok = 0.0
    t_scan = time.perf_counter()
    try:
        for layer in todo:
            t_layer = time.perf_counter()
            tc = tset.layer(layer)
            enc = _Encoder(tc, p.precision)
            X = cache.layer_in(layer)
            seqs_per_chunk = max(1, p.chunk_tokens // T)
            # seeded per layer: a resumed build samples exactly what an uninterrupted one would
            gen = torch.Generator().manual_seed(p.seed * 100_003 + layer)
            stats = _LayerStats(tc.d_transcoder, p, keep_ids.numel(), gen)
            kth_all = torch.full((n_seqs * T,), float("inf")) if tc.activation == "topk" else None
            for s0 in range(0, n_seqs, seqs_per_chunk):
                s1 = min(n_seqs, s0 + seqs_per_chunk)
                x = X[s0 * T : s1 * T].view(s1 - s0, T, -1)[:, 1:].reshape(-1, X.shape[1])
                g_rows = (torch.arange(s0, s1).unsqueeze(1) * T + torch.arange(1, T)).reshape(-1)
                threads = tuner.pick()
                torch.set_num_threads(threads)
                t_enc = time.perf_counter()
                c, f, v, kth = enc.encode(x)
                tuner.record(threads, time.perf_counter() - t_enc, x.shape[0])
                torch.set_num_threads(tuner.n)
                if kth_all is not None:
                    kth_all[g_rows] = kth
                with _one_thread():
                    g = g_rows[c]
                    stats.update(f, g, in_map[tokens.view(-1)[g]], v)
                # progress counts corpus tokens through *all* layers still to do: the rate is tokens/s
                done_tok += (s1 - s0) * (T - 1) / len(todo)
                report(done_tok, n_tok, layer)
            _tick(timings, "scan", t_layer)
            torch.set_num_threads(tuner.best())  # the logit matmuls behave like the encoder's
            rows, search_rows = _finish_layer(
                layer,
                tc,
                enc,
                stats,
                X,
                kth_all,
                tokens,
                T,
                n_tok,
                head,
                W_U,
                logit_ids,
                keep_ids,
                vocab_text,
                store,
                p,
                timings,
            )
            torch.set_num_threads(tuner.n)
            t_w = time.perf_counter()
            store.put_layer(layer, rows, search_rows, time.perf_counter() - t_layer)
            _tick(timings, "write", t_w)
            cache.drop(layer)
    finally:
        close()
    seconds = time.perf_counter() - t_start
    scan_s = time.perf_counter() - t_scan
    tps = n_tok * len(todo) / max(scan_s, 1e-9) / max(len(layer_list), 1)
    store.set_meta("built_at", time.time())
    store.set_meta("build_seconds", seconds)
    store.set_meta("tokens_per_s", tps)
    timings["encode_threads"] = tuner.best()
    store.set_meta("timings", {k: round(v, 2) for k, v in timings.items()})
    return BuildResult(
        Path(out_path),
        len(layer_list),
        store.n_features(),
        n_tok,
        seconds,
        tps,
        todo,
        {k: round(v, 2) for k, v in timings.items()},
    )


def _finish_layer(
    layer: int,
    tc: LayerTranscoder,
    enc: _Encoder,
    st: _LayerStats,
    X: torch.Tensor,
    kth_all: torch.Tensor | None,
    tokens: torch.Tensor,
    T: int,
    n_tok: int,
    head: OutputHead,
    W_U: torch.Tensor,
    logit_ids: torch.Tensor,
    keep_ids: torch.Tensor,
    vocab_text: dict[int, str],
    store: AtlasStore,
    p: AtlasParams,
    timings: dict[str, float],
) -> tuple[list[tuple], list[tuple]]:
    t0 = time.perf_counter()
    with _one_thread():  # small index bookkeeping; the gathers and matmuls below use every thread
        F = st.F
        # --- quantile examples: reservoir minus the top examples, sorted by activation, evenly spaced picks ---
        res_v, res_g = st.res_v.clone(), st.res_g.clone()
        dup = (res_g.unsqueeze(2) == st.top_g.unsqueeze(1)).any(2) | (res_g < 0)
        res_v[dup] = float("-inf")
        res_v, order = res_v.sort(dim=1, descending=True)
        res_g = res_g.gather(1, order)
        n_valid = torch.isfinite(res_v).sum(1)
        m = p.n_bands * p.per_band
        frac = torch.linspace(0, 1, m)
        pick = (frac.unsqueeze(0) * (n_valid - 1).clamp_min(0).unsqueeze(1)).round().long()
        pick_ok = (n_valid.unsqueeze(1) > 0) & torch.cat(
            [torch.ones(F, 1, dtype=torch.bool), pick[:, 1:] != pick[:, :-1]], dim=1
        )
        q_v, q_g = res_v.gather(1, pick), res_g.gather(1, pick)
        q_ok = pick_ok & torch.isfinite(q_v)
        top_ok = torch.isfinite(st.top_v) & (st.top_g >= 0)

        # --- example windows [F, S, W] (S = top + quantile slots), re-encoded for their own feature only ---
        slot_g = torch.cat([st.top_g.masked_fill(~top_ok, -1), q_g.masked_fill(~q_ok, -1)], 1)
        slot_v = torch.cat([st.top_v, q_v], 1)
        band = torch.arange(m) // p.per_band + 1
        slot_grp = torch.cat(
            [torch.zeros(F, p.n_top, dtype=torch.int8), band.to(torch.int8).unsqueeze(0).expand(F, -1)], 1
        )
        ok = slot_g >= 0
        S = slot_g.shape[1]
        W = p.window_before + 1 + p.window_after
        g_safe = slot_g.clamp_min(0)
        seq, pos = g_safe // T, g_safe % T
        start = (pos - p.window_before).clamp_min(0)
        wpos = start.unsqueeze(2) + torch.arange(W)
        valid = (wpos <= (pos + p.window_after).clamp_max(T - 1).unsqueeze(2)) & (wpos > 0)  # BOS shows 0
        valid &= ok.unsqueeze(2)
        rows = seq.unsqueeze(2) * T + wpos.clamp_max(T - 1)
        live = ok.any(1).nonzero().squeeze(1).tolist()  # dead features need no gathers
    acts = torch.zeros(F, S, W)
    # memory-bound gathers: one thread loses little on a quiet machine and a lot less on a busy one
    one = _one_thread()
    one.__enter__()
    fb = max(1, 65536 // (S * W))  # ~65k gathered rows (~80 MB of bf16 at d=640) per block
    i = 0
    while i < len(live):
        f0 = live[i]
        f1 = min(F, f0 + fb)
        while i < len(live) and live[i] < f1:
            i += 1
        r = rows[f0:f1]
        xw = X.index_select(0, r.reshape(-1)).view(f1 - f0, S, W, -1)
        kth = kth_all[r] if kth_all is not None else None
        acts[f0:f1] = enc.encode_windows(xw, f0, kth)
    one.__exit__(None, None, None)
    with _one_thread():
        acts = torch.where(valid, acts, torch.zeros(()))
        center = (pos - start).unsqueeze(2)
        acts.scatter_(2, center, torch.where(ok, slot_v, torch.zeros(())).unsqueeze(2))  # exact recorded value
        ok_np, grp_np, seq_np, pos_np = ok.numpy(), slot_grp.numpy(), seq.numpy(), pos.numpy()
        acts_np = acts.to(torch.float16).numpy()

    t1 = _tick(timings, "windows", t0)
    # --- output tokens: decoder rows through the final norm gain and the unembedding ---
    dirs = tc.W_dec.float()
    if head.center:
        dirs = dirs - dirs.mean(1, keepdim=True)
    dirs = (dirs * head.gain).to(W_U.dtype)
    nl = min(p.n_logits, W_U.shape[0])
    top_l_v, top_l_i, bot_l_v, bot_l_i = [], [], [], []
    for f0 in range(0, F, 512):
        lg = (dirs[f0 : f0 + 512] @ W_U.T).float()
        tv, ti = lg.topk(nl, dim=1)
        bv, bi = (-lg).topk(nl, dim=1)
        top_l_v.append(tv)
        top_l_i.append(logit_ids[ti])
        bot_l_v.append(-bv)
        bot_l_i.append(logit_ids[bi])
    top_l_v, top_l_i = torch.cat(top_l_v).tolist(), torch.cat(top_l_i).tolist()
    bot_l_v, bot_l_i = torch.cat(bot_l_v).tolist(), torch.cat(bot_l_i).tolist()

    t1 = _tick(timings, "logits", t1)
    # --- input tokens: most activation mass per token id ---
    in_sum = st.in_sum.view(F, -1)
    ni = min(p.n_inputs, in_sum.shape[1])
    in_v, in_i = in_sum.topk(ni, dim=1)
    in_c = st.in_cnt.view(F, -1).gather(1, in_i)
    in_ids = keep_ids[in_i].tolist()
    in_v, in_c = in_v.tolist(), in_c.tolist()
    logit_text_needed = set(x for row in top_l_i for x in row[:3]) | set(x for row in bot_l_i for x in row[:1])
    text = dict(vocab_text)
    missing = [i for i in logit_text_needed if i not in text]
    text.update(zip(missing, store.vocab_text(missing), strict=True))

    t1 = _tick(timings, "inputs", t1)
    # --- per-feature rows (the only Python loop over features: serialisation) ---
    count = st.count.tolist()
    mean = (st.sum / st.count.clamp_min(1)).tolist()
    max_act = st.top_v[:, 0].clamp_min(0).tolist()
    hist_hi = torch.pow(2.0, st.hist_e.double()).tolist()
    hist = st.hist.tolist()
    tok_np = tokens.numpy()
    rows_out, search_out = [], []
    for i in range(F):
        sel = ok_np[i]
        e_grp, e_seq, e_pos = grp_np[i][sel], seq_np[i][sel], pos_np[i][sel]
        blob = pack_examples(e_grp, e_seq, e_pos, acts_np[i][sel])
        inputs = [[in_ids[i][j], round(in_v[i][j], 5), in_c[i][j]] for j in range(ni) if in_c[i][j] > 0]
        logits = {
            "top": [[top_l_i[i][j], round(top_l_v[i][j], 5)] for j in range(nl)],
            "bottom": [[bot_l_i[i][j], round(bot_l_v[i][j], 5)] for j in range(nl)],
        }
        alive = count[i] > 0
        label = labels_mod.auto_label(
            top_logits=[text.get(t, "") for t in top_l_i[i][:3]],
            inputs=[(text.get(t, ""), s) for t, s, _ in inputs],
            alive=alive,
        )
        snippets = []
        if alive:  # activating token with a little left context, for "example text" search
            for j in range(min(len(e_grp), 6)):
                if e_grp[j] != 0:
                    break
                s, q = int(e_seq[j]), int(e_pos[j])
                snippets.append("".join([text.get(t, "") for t in tok_np[s, max(1, q - 3) : q + 1].tolist()]))
        search = "\n".join(
            [
                label,
                " ".join(text.get(t, "") for t, _, _ in inputs[:5]),
                " ".join(text.get(t, "") for t in top_l_i[i][:3]),
                " | ".join(snippets),
            ]
        ).lower()
        hist_json = json.dumps({"hi": hist_hi[i] if alive else 0.0, "nb": st.nb, "counts": _trim(hist[i])})
        freq = count[i] / max(n_tok, 1)
        rows_out.append(
            (
                layer,
                i,
                max_act[i],
                mean[i] if alive else 0.0,
                freq,
                count[i],
                hist_json,
                json.dumps(logits),
                json.dumps(inputs),
                blob,
                label,
            )
        )
        search_out.append((layer, i, max_act[i], freq, label, search))
    _tick(timings, "rows", t1)
    return rows_out, search_out


def _tick(timings: dict[str, float], name: str, t0: float) -> float:
    t = time.perf_counter()
    timings[name] = timings.get(name, 0.0) + t - t0
    return t


def _trim(counts: list[int]) -> list[int]:
    end = len(counts)
    while end > 0 and counts[end - 1] == 0:
        end -= 1
    return counts[:end]
