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
