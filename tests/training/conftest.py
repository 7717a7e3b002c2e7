"""Fixtures for the training tests: a tiny random Llama (2 layers, d=64), its tokenizer, a local corpus."""

from __future__ import annotations

import pytest
import torch
from training_text import make_text


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    """(model, tokenizer) of a random 2-layer Llama with d_model 64."""
    from transformers import AutoModelForCausalLM

    from circuitboard.devtools.tiny import build_tokenizer, tiny_config

    torch.manual_seed(0)
    tok = build_tokenizer()
    cfg = tiny_config("llama", vocab_size=len(tok), n_layers=2, d_model=64)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    return model, tok


@pytest.fixture(scope="session")
def text_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("texts")
    for i, doc in enumerate(make_text(1)):
        (d / f"doc_{i}.txt").write_text(doc)
    (d / "dup.txt").write_text(make_text(1)[0])  # an exact duplicate: dropped
    return d


SEQ_LEN = 32  # test_train.T


@pytest.fixture(scope="session")
def cache(tiny_lm, text_dir, tmp_path_factory):
    """(root, manifest): the corpus of `text_dir` and an activation cache of `tiny_lm` over it (6k train and 1.5k
    held-out tokens), shared by the per-layer and the cross-layer training tests."""
    from circuitboard.data.activations import build_activation_cache
    from circuitboard.data.corpus import build_corpus

    model, tok = tiny_lm
    root = tmp_path_factory.mktemp("prep")
    build_corpus(root / "corpus", local_dir=text_dir, heldout_fraction=0.2, log=lambda s: None)
    m = build_activation_cache(
        model,
        tok,
        root / "corpus",
        root / "acts",
        n_train_tokens=6_016,
        n_heldout_tokens=1_536,
        seq_len=SEQ_LEN,
        batch_size=16,
        model_name="tiny",
        progress=False,
        log=lambda s: None,
    )
    return root, m
