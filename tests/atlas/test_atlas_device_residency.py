"""GPU readiness (issue 16): the atlas scan's per-chunk accumulation stays on the device and reads nothing back.

`LayerStats.update` runs on the `meta` device, where tensors have shapes but no values: any device -> host read
(`.item()`, `bool(t)`, a boolean-mask index, `nonzero()`, `bincount`'s sizing, `.cpu()`) raises there. The one
read of a chunk by design, the encoder's compaction of its nonzero activations into triplets, happens before.
On a device the update masks candidates instead of dropping them (`compact=False`): on the CPU that path must
give the tables the CPU's own (`compact=True`) gives."""

from __future__ import annotations

import pytest
import torch

from circuitboard.atlas.encode import Encoder, LayerTranscoder
from circuitboard.atlas.layer_stats import LayerStats
from circuitboard.atlas.params import AtlasParams

META = torch.device("meta")
P = AtlasParams(n_top=5, n_reservoir=4, hist_bins=16)
F, N_IN = 11, 3


def _chunks(n_chunks: int = 6, seed: int = 0):
    """Sparse (feature, cache row, token id, value) chunks with distinct values (no ties), growing in scale (the
    histogram's range doubles), the last smaller than K."""
    g = torch.Generator().manual_seed(seed)
    for chunk in range(n_chunks):
        n = 40 if chunk < n_chunks - 1 else 3
        f = torch.randint(0, F, (n,), generator=g)
        v = (torch.rand(n, generator=g) + 0.01) * 2.0**chunk
        rows = torch.randperm(1000, generator=g)[:n] + 1000 * chunk
        tok = torch.randint(-1, N_IN, (n,), generator=g)  # -1: an untracked token
        yield f, rows, tok, v


def _stats(device: torch.device | str, compact: bool | None = None) -> LayerStats:
    return LayerStats(F, P, N_IN, torch.Generator().manual_seed(1), device, compact)


def test_update_never_reads_the_device():
    st = _stats(META)
    assert not st.compact  # a device masks
    for f, rows, tok, v in _chunks():
        st.update(f.to(META), rows.to(META), tok.to(META), v.to(META))
    for name in LayerStats._TABLES:
        assert getattr(st, name).device == META, name
    assert st.top_v.shape == (F, P.n_top) and st.hist.shape == (F, P.hist_bins)


def test_masked_update_gives_the_compacted_tables():
    a, b = _stats("cpu", compact=True), _stats("cpu", compact=False)
    for f, rows, tok, v in _chunks(seed=2):
        a.update(f, rows, tok, v)
        b.update(f, rows, tok, v)
    for name in LayerStats._TABLES:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert int(a.count.sum()) == 5 * 40 + 3 and bool((a.res_g >= 0).any())


def test_scan_of_a_layer_never_reads_the_device_but_once_per_chunk(tiny_world, monkeypatch):
    """The whole chunk loop of a TopK layer (rows copied to the device, encoded, accumulated) on meta. Its two reads
    by design are stood in for: the compaction to nonzero triplets keeps every pair (a fixed size), and the
    statistics' read back at the end of the layer stays on meta."""
    from circuitboard.atlas import build, encode
    from circuitboard.data.activations import ActivationCache
    from circuitboard.engine.head import head_from_folder

    monkeypatch.setattr(encode, "nonzero_rows", lambda mask: torch.arange(mask.numel(), device=mask.device))
    monkeypatch.setattr(LayerStats, "to", lambda self, device: self)
    p = AtlasParams(chunk_tokens=256)
    cache, head = ActivationCache(tiny_world.cache_dir), head_from_folder(tiny_world.model_dir)
    corpus = build._corpus_view(cache.tokens(), head, p)
    tset = encode.open_transcoders(tiny_world.sets["topk"])
    progress = build._Progress(False, corpus.n_tok, 1)
    # no store nor output head: the scan uses neither
    b = build._Build(tset, cache, corpus, head, head.W_U, None, p, {}, encode.ThreadTuner(), progress, META)
    scan = build._scan_layer(b, 1)
    assert scan.enc.W.device == META and scan.kth_all is not None and scan.kth_all.device == META
    assert scan.stats.top_v.device == META and scan.stats.in_sum.device == META


def test_encoder_windows_stay_on_the_device():
    """Re-encoding example windows (after the scan) is one product per block on the device: nothing read."""
    d, d_t = 8, 6
    g = torch.Generator().manual_seed(0)
    tc = LayerTranscoder(torch.randn(d_t, d, generator=g), torch.zeros(d_t), torch.randn(d_t, d), "topk", k=2)
    enc = Encoder(tc, "fp32", META)
    assert enc.W.device == META
    acts = enc.encode_windows(torch.randn(3, 4, 5, d), 1, torch.zeros(3, 4, 5))
    assert acts.device == META and acts.shape == (3, 4, 5)


def test_the_meta_device_catches_a_host_read():
    t = torch.ones(4, device=META)
    for read in (lambda: bool(t.any()), lambda: t[t > 0], lambda: torch.bincount(t.long()), t.cpu):
        with pytest.raises((RuntimeError, NotImplementedError)):
            read()
