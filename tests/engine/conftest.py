import pytest
import torch

from circuitboard.devtools.tiny import build_tiny_model
from circuitboard.engine import patterns
from circuitboard.engine.adapters import get_adapter


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_models():
    """One tiny random model + tokenizer per architecture, built once per session."""
    cache = {}

    def get(arch: str):
        if arch not in cache:
            model, tok = build_tiny_model(arch, seed=0)
            patterns.use_pattern_attention(model)
            cache[arch] = (model, tok, get_adapter(model))
        return cache[arch]

    return get
