"""The atlas finds planted features, with correct statistics, for every activation kind; resume works."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from atlas_fixtures import PLANT_FEATURE, PLANT_LAYER

from circuitboard import precision
from circuitboard.atlas.build import build_atlas
from circuitboard.atlas.layer_stats import LayerStats
from circuitboard.atlas.params import AtlasParams
from circuitboard.atlas.records import feature_record
from circuitboard.atlas.store import AtlasStore


def _dallas_count(world) -> int:
    body = world.seqs[:, 1:]
    return int((body == world.dallas).sum())


@pytest.mark.parametrize("kind", ["relu", "topk", "jumprelu"])
def test_planted_feature_found_and_labelled(tiny_world, tmp_path, kind):
    out = tmp_path / f"atlas_{kind}.sqlite"
    res = build_atlas(tiny_world.model_dir, tiny_world.sets[kind], tiny_world.cache_dir, out, progress=False)
    assert res.layers_built == [0, 1]
    store = AtlasStore(out)
    rec = feature_record(store, PLANT_LAYER, PLANT_FEATURE)
    n_dallas = _dallas_count(tiny_world)
    assert rec["n_active"] == n_dallas
    assert len(rec["examples"]) == min(20, n_dallas)
    for ex in rec["examples"]:
        assert ex["tokens"][ex["center"]] == "dallas"
        assert ex["acts"][ex["center"]] == pytest.approx(ex["max_act"], rel=1e-2)
        # it fires on dallas only, so the rest of each window is zero unless dallas repeats
        others = [a for t, a in zip(ex["tokens"], ex["acts"], strict=True) if t != "dallas"]
        assert max(others, default=0.0) == 0.0
    acts = [ex["acts"][ex["center"]] for ex in rec["examples"]]
    assert acts == sorted(acts, reverse=True)
    assert rec["max_act"] == pytest.approx(acts[0], rel=1e-3)
    assert rec["top_logits"][0]["text"] == "texas"
    assert rec["top_input_tokens"][0]["text"] == "dallas"
    assert rec["top_input_tokens"][0]["count"] == n_dallas
    assert rec["label"] == '→ texas · on "dallas"'
    n_tok = tiny_world.seqs[:, 1:].numel()
    assert rec["frequency"] == pytest.approx(n_dallas / n_tok)
    assert sum(rec["histogram"]["counts"]) == n_dallas
    assert rec["histogram"]["edges"][-1] >= rec["max_act"] * 0.999
    # lower-quantile examples are dallas too, and never repeat a top example
    q_ex = [e for band in rec["quantile_examples"] for e in band["examples"]]
    assert all(e["tokens"][e["center"]] == "dallas" for e in q_ex)
    top_keys = {(e["seq"], e["position"]) for e in rec["examples"]}
    assert not top_keys & {(e["seq"], e["position"]) for e in q_ex}
    if n_dallas > 20:
        assert q_ex
    assert len(rec["quantile_values"]) == 100
    # every feature of both layers is there, dead ones labelled as such
    assert store.layer_sizes() == {0: 48, 1: 48}


def test_chunked_top_k_matches_bruteforce():
    g = torch.Generator().manual_seed(0)
    F, C = 7, 40
    p = AtlasParams(n_top=5, n_reservoir=4)
    st = LayerStats(F, p, n_in_vocab=3, gen=torch.Generator().manual_seed(1))
    all_f, all_v, all_g = [], [], []
    for chunk in range(6):
        n = 30 if chunk < 5 else 3  # the last chunk is smaller than k
        c = torch.randperm(C, generator=g)[:n]
        f = torch.randint(0, F, (n,), generator=g)
        v = torch.rand(n, generator=g) + 0.01
        g_rows = torch.arange(C) + 1000 * chunk
        st.update(f, g_rows[c], torch.zeros(n, dtype=torch.int64), v)
        all_f.append(f)
        all_v.append(v)
        all_g.append(g_rows[c])
    f, v, gg = torch.cat(all_f), torch.cat(all_v), torch.cat(all_g)
    for row in range(F):
        want = v[f == row].sort(descending=True)
        got = st.top_v[row][torch.isfinite(st.top_v[row])]
        assert torch.equal(got, want.values[:5])
        assert torch.equal(st.top_g[row][: got.numel()], gg[f == row][want.indices[:5]])
        # reservoir entries are real (value, row) pairs of this feature
        ok = st.res_g[row] >= 0
        assert ok.sum() == min(4, int((f == row).sum()))
        pairs = set(zip(gg[f == row].tolist(), v[f == row].tolist(), strict=True))
        assert set(zip(st.res_g[row][ok].tolist(), st.res_v[row][ok].tolist(), strict=True)) <= pairs
    assert st.count.tolist() == torch.bincount(f, minlength=F).tolist()
    assert st.in_cnt.view(F, 3)[:, 0].tolist() == torch.bincount(f, minlength=F).tolist()


def test_doubling_histogram_is_exact():
    p = AtlasParams(hist_bins=16)
    st = LayerStats(3, p, n_in_vocab=1, gen=torch.Generator().manual_seed(0))
    rng = np.random.default_rng(0)
    vals = []
    for scale in (0.1, 1.0, 7.0, 3.0):  # the range grows twice, then stays
        v = torch.from_numpy(rng.uniform(1e-3, scale, 200).astype(np.float32))
        f = torch.zeros(200, dtype=torch.int64)
        st._hist_update(f, v)
        vals.append(v.numpy())
    allv = np.concatenate(vals)
    hi = 2.0 ** int(st.hist_e[0])
    want, _ = np.histogram(allv, bins=16, range=(0, hi))
    assert hi >= allv.max() > hi / 2
    assert st.hist[0].tolist() == want.tolist()
    assert st.hist[1].sum() == 0


def test_resume_after_interruption(tiny_world, tmp_path, built_atlas):
    out = tmp_path / "atlas.sqlite"

    def stop_in_layer_1(done, total, layer):
        if layer == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_atlas(tiny_world.model_dir, tiny_world.sets["relu"], tiny_world.cache_dir, out, progress=stop_in_layer_1)
    store = AtlasStore(out)
    assert store.done_layers() == {0}
    store.set_user_label(0, 3, "my label")
    res = build_atlas(tiny_world.model_dir, tiny_world.sets["relu"], tiny_world.cache_dir, out, progress=False)
    assert res.layers_built == [1]
    rec = feature_record(store, PLANT_LAYER, PLANT_FEATURE)
    assert rec["label"] == '→ texas · on "dallas"'
    # the resumed layer is exactly what an uninterrupted build wrote (sampling is seeded per layer)
    whole = AtlasStore(built_atlas)
    for idx in range(0, 48, 7):
        a, b = feature_record(store, 1, idx), feature_record(whole, 1, idx)
        for key in ("examples", "quantile_examples", "histogram", "top_logits", "top_input_tokens", "auto_label"):
            assert a[key] == b[key], (idx, key)
    assert feature_record(store, 0, 3)["label"] == "my label"
    # nothing left to do: a third call builds nothing
    assert (
        build_atlas(
            tiny_world.model_dir, tiny_world.sets["relu"], tiny_world.cache_dir, out, progress=False
        ).layers_built
        == []
    )
    # resume=False rebuilds everything but keeps the user's label
    res = build_atlas(
        tiny_world.model_dir, tiny_world.sets["relu"], tiny_world.cache_dir, out, progress=False, resume=False
    )
    assert res.layers_built == [0, 1]
    assert feature_record(store, 0, 3)["label"] == "my label"


def test_resume_under_another_compute_dtype_rebuilds(tiny_world, tmp_path, monkeypatch):
    """ "auto" resolves per machine (bf16 on a GPU or an AMX CPU): a build resumed where it resolves otherwise
    starts over instead of mixing layers scanned in two dtypes."""
    out = tmp_path / "atlas.sqlite"

    def stop_in_layer_1(done, total, layer):
        if layer == 1:
            raise KeyboardInterrupt

    def machine_computes(name: str) -> None:
        monkeypatch.setenv("CIRCUITBOARD_COMPUTE_DTYPE", name)
        precision.compute_dtype.cache_clear()  # resolved once per process

    try:
        machine_computes("fp32")
        with pytest.raises(KeyboardInterrupt):
            build_atlas(
                tiny_world.model_dir, tiny_world.sets["relu"], tiny_world.cache_dir, out, progress=stop_in_layer_1
            )
        assert AtlasStore(out).done_layers() == {0}
        machine_computes("bf16")
        res = build_atlas(tiny_world.model_dir, tiny_world.sets["relu"], tiny_world.cache_dir, out, progress=False)
        assert res.layers_built == [0, 1]
        # the same dtype again: nothing left to do
        again = build_atlas(tiny_world.model_dir, tiny_world.sets["relu"], tiny_world.cache_dir, out, progress=False)
        assert again.layers_built == []
    finally:  # later tests resolve the dtype of this machine again
        monkeypatch.delenv("CIRCUITBOARD_COMPUTE_DTYPE")
        precision.compute_dtype.cache_clear()


def test_missing_cache_is_computed_with_one_model_pass(tiny_world, tmp_path):
    cache = tmp_path / "activations"
    out = tmp_path / "atlas.sqlite"
    build_atlas(
        tiny_world.model,
        tiny_world.sets["relu"],
        cache,
        out,
        progress=False,
        texts=tiny_world.texts,
        tokenizer=tiny_world.tokenizer,
        seq_len=32,
        max_tokens=48 * 32,
    )
    assert (cache / "manifest.json").is_file()
    rec = feature_record(AtlasStore(out), PLANT_LAYER, PLANT_FEATURE)
    assert rec["label"] == '→ texas · on "dallas"'


def test_thread_tuner_prefers_the_faster_setting(monkeypatch):
    from circuitboard.atlas.encode import ThreadTuner

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    t = ThreadTuner(period=4)
    cost = {2: 1.0, 1: 3.0}  # a quiet machine: two threads are faster
    picks = []
    for _ in range(12):
        n = t.pick()
        picks.append(n)
        t.record(n, cost[n], 1.0)
    assert picks[:3] == [2, 2, 1] and t.best() == 2 and picks[-2:] == [2, 2]
    cost = {2: 9.0, 1: 3.0}  # the machine got busy: the periodic re-measurement switches to one thread
    for _ in range(12):
        n = t.pick()
        t.record(n, cost[n], 1.0)
    assert t.best() == 1
