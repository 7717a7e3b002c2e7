"""GPU readiness (issue 16): the row loop keeps its tensors on the model's device and never reads one back.

The loop is run on the `meta` device, where tensors have shapes but no values: any hidden device -> host read
(`.item()`, `.tolist()`, a tensor in an `if`, a boolean mask, `.cpu()`) raises there. Index bookkeeping (which
features, layers, positions) is on the CPU by design, as it is on a GPU."""

import dataclasses

import pytest
import torch

from circuitboard.engine.adapters import get_adapter
from circuitboard.engine.attribution import RowComputer, _batches_by_layer_pos, salient_targets
from circuitboard.engine.replacement import build_context
from circuitboard.engine.rowstore import RowStore, ranking_influence
from circuitboard.engine.sources import SourceTable, Writers
from circuitboard.engine.transcoders import random_transcoder_set

PROMPT = "The capital of Texas is Austin, and Dallas is in"
META = torch.device("meta")


def _to_meta(obj):
    """A copy of a dataclass of tensors (and lists of them) with every tensor on the meta device."""
    changes = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, torch.Tensor):
            changes[f.name] = value.to(META)
        elif isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
            changes[f.name] = [v.to(META) for v in value]
    return dataclasses.replace(obj, **changes)


def _meta_loop(model, tok, tc):
    """The row loop (rows, their storage, the greedy order's influence) on meta tensors."""
    adapter = get_adapter(model)
    ids = tok(PROMPT, return_tensors="pt").input_ids[0]
    tset = random_transcoder_set(adapter.n_layers, adapter.d_model, 96, seed=1, **tc)
    ctx = build_context(adapter, tset, ids)  # the forward runs for real: it decides which features are active
    sources = SourceTable(tset, ctx)
    targets = salient_targets(adapter, ctx, 5, 0.99, str)
    # Everything the row loop multiplies moves to meta; the CPU keeps only the index bookkeeping.
    meta_model = model.to(META)
    meta_adapter = get_adapter(meta_model)
    meta_tset = random_transcoder_set(adapter.n_layers, adapter.d_model, 96, seed=1, **tc).to(META, torch.float32)
    meta_ctx = _to_meta(ctx)
    sources.writers = [Writers([_to_meta(r) for r in w.rounds]) for w in sources.writers]
    sources.values = sources.values.to(META)
    targets = dataclasses.replace(targets, weights=targets.weights.to(META), read=targets.read.to(META))
    computer = RowComputer(meta_adapter, meta_tset, meta_ctx, sources)
    logit_rows = computer.target_rows(targets)
    budget = min(40, sources.n_active)
    store = RowStore(sources.active, sources.n_cols, ctx.n_pos, budget, logit_rows)
    chunk = torch.randperm(sources.n_active, generator=torch.Generator().manual_seed(0))[:budget]
    visited: list[int] = []
    for batch in _batches_by_layer_pos(sources.active, chunk, 16):
        layers, positions, feats = sources.active[batch].unbind(1)
        store.add(computer.rows(layers, positions, computer.feature_reads(layers, positions, feats)), layers, positions)
        visited.extend(batch.tolist())
        influence = ranking_influence(store, logit_rows, targets.weights, torch.tensor(visited), adapter.n_layers)
        assert influence.device == META and influence.shape == (sources.n_cols,)
    rows = store.blocks[0].values
    assert rows.device == META and store.sums.device == META


@pytest.mark.parametrize(
    "arch,tc",
    [
        ("llama", dict(kind="relu")),
        ("gemma2", dict(kind="jumprelu", skip=True)),
        ("qwen2", dict(kind="relu", cross_layer=True)),
    ],
)
def test_row_loop_never_reads_the_device(arch, tc):
    from circuitboard.devtools.tiny import build_tiny_model
    from circuitboard.engine import patterns

    model, tok = build_tiny_model(arch, seed=0)  # its own copy: moved to meta on the way
    patterns.use_pattern_attention(model)
    _meta_loop(model, tok, tc)
