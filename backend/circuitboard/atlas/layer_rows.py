"""A scanned layer turned into the store's rows: examples, output and input tokens, label and search text.

Example windows are re-encoded for their own feature only (a gathered batched dot product) to get per-token
activations; output tokens come from the decoder rows through the final norm gain and the unembedding (over
the token ids the build chose, `CorpusView.logit_ids`); input tokens are the ids carrying most activation.

The statistics arrive on the CPU (read back once per layer, `build._scan_layer`); the two products, window
re-encoding and output logits, run on the encoder's device and are read back once each.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import torch

from circuitboard.atlas import labels as labels_mod
from circuitboard.atlas.encode import Encoder, LayerTranscoder, one_thread
from circuitboard.atlas.layer_stats import LayerStats
from circuitboard.atlas.params import AtlasParams
from circuitboard.atlas.store import AtlasStore, pack_examples
from circuitboard.engine.head import OutputHead


@dataclass
class CorpusView:
    """What every layer of a build shares: the scanned tokens and the token ids the statistics use."""

    tokens: torch.Tensor  # [n_seqs, T] int64, position 0 = BOS
    n_tok: int  # tokens scanned per layer (position 0 excluded)
    keep_ids: torch.Tensor  # sorted ids tracked for input-token statistics
    in_map: torch.Tensor  # token id -> index into keep_ids (-1: untracked)
    logit_ids: torch.Tensor  # ids the output tokens are ranked over
    vocab_text: dict[int, str]  # text of keep_ids

    @property
    def seq_len(self) -> int:
        return self.tokens.shape[1]


@dataclass
class LayerScan:
    """One layer after the scan over the cache."""

    layer: int
    tc: LayerTranscoder
    enc: Encoder
    stats: LayerStats  # on the CPU
    X: torch.Tensor  # bf16 [N*T, d] cached MLP inputs (on the CPU)
    kth_all: torch.Tensor | None  # TopK: every token's k-th pre-activation (on the encoder's device)


def tick(timings: dict[str, float], name: str, t0: float) -> float:
    t = time.perf_counter()
    timings[name] = timings.get(name, 0.0) + t - t0
    return t


def layer_rows(
    scan: LayerScan,
    corpus: CorpusView,
    head: OutputHead,
    W_U: torch.Tensor,
    store: AtlasStore,
    p: AtlasParams,
    timings: dict[str, float],
) -> tuple[list[tuple], list[tuple]]:
    """(feature rows, search rows) of one layer, as `AtlasStore.put_layer` takes them."""
    t0 = time.perf_counter()
    ex = _examples(scan, corpus.seq_len, p)
    t1 = tick(timings, "windows", t0)
    logits = _output_tokens(scan.tc, head, W_U, corpus.logit_ids, p)
    t1 = tick(timings, "logits", t1)
    inputs = _input_tokens(scan.stats, corpus.keep_ids, p)
    text = _texts(corpus.vocab_text, store, logits)
    t1 = tick(timings, "inputs", t1)
    out = _feature_rows(scan.layer, scan.stats, ex, logits, inputs, text, corpus)
    tick(timings, "rows", t1)
    return out


# ---------------------------------------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _Slots:
    """Example slots [F, S] (top examples, then the quantile bands) and their context windows [F, S, W]."""

    ok: torch.Tensor  # slot holds an example
    value: torch.Tensor  # its recorded activation
    group: torch.Tensor  # int8: 0 = top, b = quantile band b
    seq: torch.Tensor
    pos: torch.Tensor
    start: torch.Tensor  # first window position
    valid: torch.Tensor  # [F, S, W] window position inside the sequence (and not BOS)
    rows: torch.Tensor  # [F, S, W] cache rows of the window
    live: list[int]  # features with at least one example


@dataclass
class _Examples:
    """Per feature and slot, as numpy for serialisation."""

    ok: np.ndarray
    group: np.ndarray
    seq: np.ndarray
    pos: np.ndarray
    acts: np.ndarray  # float16 [F, S, W] window activations


def _examples(scan: LayerScan, T: int, p: AtlasParams) -> _Examples:
    with one_thread():  # small index bookkeeping
        q_v, q_g, q_ok = _quantile_picks(scan.stats, p)
        slots = _slots(scan.stats, q_v, q_g, q_ok, T, p)
    acts = _window_acts(scan, slots)
    with one_thread():
        acts = torch.where(slots.valid, acts, torch.zeros(()))
        center = (slots.pos - slots.start).unsqueeze(2)
        recorded = torch.where(slots.ok, slots.value, torch.zeros(()))
        acts.scatter_(2, center, recorded.unsqueeze(2))  # the exact recorded value at the centre
        return _Examples(
            slots.ok.numpy(), slots.group.numpy(), slots.seq.numpy(), slots.pos.numpy(), acts.to(torch.float16).numpy()
        )


def _quantile_picks(st: LayerStats, p: AtlasParams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantile examples: the reservoir minus the top examples, sorted by activation, evenly spaced picks.
    Returns (value, cache row, valid), each [F, n_bands * per_band]."""
    F = st.F
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
    return q_v, q_g, pick_ok & torch.isfinite(q_v)


def _slots(st: LayerStats, q_v: torch.Tensor, q_g: torch.Tensor, q_ok: torch.Tensor, T: int, p: AtlasParams) -> _Slots:
    F = st.F
    top_ok = torch.isfinite(st.top_v) & (st.top_g >= 0)
    slot_g = torch.cat([st.top_g.masked_fill(~top_ok, -1), q_g.masked_fill(~q_ok, -1)], 1)
    slot_v = torch.cat([st.top_v, q_v], 1)
    band = torch.arange(p.n_bands * p.per_band) // p.per_band + 1
    slot_grp = torch.cat([torch.zeros(F, p.n_top, dtype=torch.int8), band.to(torch.int8).unsqueeze(0).expand(F, -1)], 1)
    ok = slot_g >= 0
    W = p.window_before + 1 + p.window_after
    g_safe = slot_g.clamp_min(0)
    seq, pos = g_safe // T, g_safe % T
    start = (pos - p.window_before).clamp_min(0)
    wpos = start.unsqueeze(2) + torch.arange(W)
    valid = (wpos <= (pos + p.window_after).clamp_max(T - 1).unsqueeze(2)) & (wpos > 0)  # BOS shows 0
    valid &= ok.unsqueeze(2)
    rows = seq.unsqueeze(2) * T + wpos.clamp_max(T - 1)
    live = ok.any(1).nonzero().squeeze(1).tolist()  # dead features need no gathers
    return _Slots(ok, slot_v, slot_grp, seq, pos, start, valid, rows, live)


def _window_acts(scan: LayerScan, slots: _Slots) -> torch.Tensor:
    """[F, S, W] activations of each feature on its own example windows, in feature blocks."""
    F, S, W = slots.rows.shape
    dev = scan.enc.device
    acts = torch.zeros(F, S, W, device=dev)
    fb = max(1, 65536 // (S * W))  # ~65k gathered rows (~80 MB of bf16 at d=640) per block
    live = slots.live
    # memory-bound gathers: one thread loses little on a quiet machine and a lot less on a busy one
    with one_thread():
        i = 0
        while i < len(live):
            f0 = live[i]
            f1 = min(F, f0 + fb)
            while i < len(live) and live[i] < f1:
                i += 1
            r = slots.rows[f0:f1]
            xw = scan.X.index_select(0, r.reshape(-1)).view(f1 - f0, S, W, -1)
            kth = scan.kth_all[r.to(dev)] if scan.kth_all is not None else None
            acts[f0:f1] = scan.enc.encode_windows(xw, f0, kth)
    return acts.cpu()


# ---------------------------------------------------------------------------------------------------------
# Output and input tokens
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _Logits:
    """Per feature, the n most promoted (top) and most suppressed (bottom) token ids and their logits."""

    top_v: list[list[float]]
    top_i: list[list[int]]
    bot_v: list[list[float]]
    bot_i: list[list[int]]
    n: int


@dataclass
class _Inputs:
    """Per feature, the n token ids with most activation mass, that mass and the activation count."""

    ids: list[list[int]]
    mass: list[list[float]]
    count: list[list[int]]
    n: int


def _output_tokens(
    tc: LayerTranscoder, head: OutputHead, W_U: torch.Tensor, logit_ids: torch.Tensor, p: AtlasParams
) -> _Logits:
    """Decoder directions through the final norm gain and the unembedding rows `W_U` (of `logit_ids`), on
    W_U's device."""
    dirs = tc.W_dec.to(W_U.device, torch.float32)
    if head.center:
        dirs = dirs - dirs.mean(1, keepdim=True)
    dirs = (dirs * head.gain.to(W_U.device)).to(W_U.dtype)
    nl = min(p.n_logits, W_U.shape[0])
    top_v, top_i, bot_v, bot_i = [], [], [], []
    for f0 in range(0, dirs.shape[0], 512):
        lg = (dirs[f0 : f0 + 512] @ W_U.T).float()
        tv, ti = lg.topk(nl, dim=1)
        bv, bi = (-lg).topk(nl, dim=1)
        top_v.append(tv)
        top_i.append(ti)
        bot_v.append(-bv)
        bot_i.append(bi)
    ids = logit_ids.to(W_U.device)
    tv, ti, bv, bi = (torch.cat(t).cpu() for t in (top_v, [ids[i] for i in top_i], bot_v, [ids[i] for i in bot_i]))
    return _Logits(tv.tolist(), ti.tolist(), bv.tolist(), bi.tolist(), nl)


def _input_tokens(st: LayerStats, keep_ids: torch.Tensor, p: AtlasParams) -> _Inputs:
    in_sum = st.in_sum.view(st.F, -1)
    ni = min(p.n_inputs, in_sum.shape[1])
    in_v, in_i = in_sum.topk(ni, dim=1)
    in_c = st.in_cnt.view(st.F, -1).gather(1, in_i)
    return _Inputs(keep_ids[in_i].tolist(), in_v.tolist(), in_c.tolist(), ni)


def _texts(vocab_text: dict[int, str], store: AtlasStore, logits: _Logits) -> dict[int, str]:
    """Token texts for labels and search: the tracked ids, plus the output tokens a label shows."""
    needed = set(x for row in logits.top_i for x in row[:3]) | set(x for row in logits.bot_i for x in row[:1])
    text = dict(vocab_text)
    missing = [i for i in needed if i not in text]
    text.update(zip(missing, store.vocab_text(missing), strict=True))
    return text


# ---------------------------------------------------------------------------------------------------------
# Rows (the only Python loop over features: serialisation)
# ---------------------------------------------------------------------------------------------------------


def _feature_rows(
    layer: int,
    st: LayerStats,
    ex: _Examples,
    logits: _Logits,
    inputs: _Inputs,
    text: dict[int, str],
    corpus: CorpusView,
) -> tuple[list[tuple], list[tuple]]:
    count = st.count.tolist()
    mean = (st.sum / st.count.clamp_min(1)).tolist()
    max_act = st.top_v[:, 0].clamp_min(0).tolist()
    hist_hi = torch.pow(2.0, st.hist_e.double()).tolist()
    hist = st.hist.tolist()
    tok_np = corpus.tokens.numpy()
    rows_out, search_out = [], []
    for i in range(st.F):
        sel = ex.ok[i]
        e_grp, e_seq, e_pos = ex.group[i][sel], ex.seq[i][sel], ex.pos[i][sel]
        blob = pack_examples(e_grp, e_seq, e_pos, ex.acts[i][sel])
        ins = [  # (token id, activation mass, count); JSON arrays as before
            (inputs.ids[i][j], round(inputs.mass[i][j], 5), inputs.count[i][j])
            for j in range(inputs.n)
            if inputs.count[i][j] > 0
        ]
        out_tokens = {
            "top": [[logits.top_i[i][j], round(logits.top_v[i][j], 5)] for j in range(logits.n)],
            "bottom": [[logits.bot_i[i][j], round(logits.bot_v[i][j], 5)] for j in range(logits.n)],
        }
        alive = count[i] > 0
        label = labels_mod.auto_label(
            top_logits=[text.get(t, "") for t in logits.top_i[i][:3]],
            inputs=[(text.get(t, ""), s) for t, s, _ in ins],
            alive=alive,
        )
        snippets = _snippets(e_grp, e_seq, e_pos, tok_np, text) if alive else []
        search = "\n".join(
            [
                label,
                " ".join(text.get(t, "") for t, _, _ in ins[:5]),
                " ".join(text.get(t, "") for t in logits.top_i[i][:3]),
                " | ".join(snippets),
            ]
        ).lower()
        hist_json = json.dumps({"hi": hist_hi[i] if alive else 0.0, "nb": st.nb, "counts": _trim(hist[i])})
        freq = count[i] / max(corpus.n_tok, 1)
        mean_i = mean[i] if alive else 0.0
        row = (layer, i, max_act[i], mean_i, freq, count[i], hist_json, json.dumps(out_tokens), json.dumps(ins))
        rows_out.append((*row, blob, label))
        search_out.append((layer, i, max_act[i], freq, label, search))
    return rows_out, search_out


def _snippets(
    e_grp: np.ndarray, e_seq: np.ndarray, e_pos: np.ndarray, tok_np: np.ndarray, text: dict[int, str]
) -> list[str]:
    """The activating token with a little left context, for "example text" search (top examples only)."""
    snippets = []
    for j in range(min(len(e_grp), 6)):
        if e_grp[j] != 0:
            break
        s, q = int(e_seq[j]), int(e_pos[j])
        snippets.append("".join([text.get(t, "") for t in tok_np[s, max(1, q - 3) : q + 1].tolist()]))
    return snippets


def _trim(counts: list[int]) -> list[int]:
    end = len(counts)
    while end > 0 and counts[end - 1] == 0:
        end -= 1
    return counts[:end]
