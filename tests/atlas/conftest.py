from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from atlas_fixtures import corpus_texts, make_model, make_tokenizer, write_transcoders

# Two shared CPU cores: keep the tests to one thread.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> SimpleNamespace:
    """Model folder, tokenizer, activation cache and three transcoder sets (relu, topk, jumprelu)."""
    from circuitboard.data.activations import ActivationCache, cache_from_texts

    root: Path = tmp_path_factory.mktemp("atlas_world")
    model_dir = root / "model"
    tok = make_tokenizer(model_dir)
    model = make_model(model_dir, vocab_size=len(tok))
    texts = corpus_texts()
    cache_dir = root / "activations"
    cache_from_texts(model, tok, texts, cache_dir, n_seqs=48, seq_len=32, model_name="tiny")
    seqs = ActivationCache(cache_dir).tokens()
    dallas, texas = tok.convert_tokens_to_ids("dallas"), tok.convert_tokens_to_ids("texas")
    W_U = model.lm_head.weight.detach()
    sets = {}
    for kind in ("relu", "topk", "jumprelu"):
        sets[kind] = root / f"transcoders_{kind}"
        write_transcoders(sets[kind], cache_dir, W_U, dallas, texas, kind=kind)
    return SimpleNamespace(
        root=root,
        model_dir=model_dir,
        tokenizer=tok,
        model=model,
        texts=texts,
        cache_dir=cache_dir,
        sets=sets,
        dallas=dallas,
        texas=texas,
        seqs=seqs,
    )


@pytest.fixture(scope="session")
def built_atlas(tiny_world) -> Path:
    """The relu set's atlas, built once for the read-side tests."""
    from circuitboard.atlas.build import build_atlas

    out = tiny_world.root / "atlas_relu.sqlite"
    build_atlas(tiny_world.model_dir, tiny_world.sets["relu"], tiny_world.cache_dir, out, progress=False)
    return out
