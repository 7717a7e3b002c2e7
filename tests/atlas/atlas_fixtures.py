"""A tiny world for atlas tests: a 2-layer random Llama (d_model 64) with a word-level tokenizer, an
activation cache over a synthetic corpus, and transcoder sets with PLANTED features.

Planted (layer 1): feature 5 reads the direction that separates the MLP inputs at "dallas" from all other
positions (bias placed between the two groups, so it fires on "dallas" only) and writes the unembedding row
of "texas" (so its top output token is "texas"). Every other feature is random and sparse.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

WORDS = (
    "the a of in is was and to on at city state river town people live near big small old new north "
    "south east west texas dallas houston austin paris france london music game team school road"
).split()
SPECIAL = ["<unk>", "<bos>", "<eos>"]
PLANT_LAYER, PLANT_FEATURE = 1, 5
D_MODEL, D_T, SEQ_LEN, N_SEQS = 64, 48, 32, 48


def make_tokenizer(folder: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIAL + list(WORDS))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>")
    fast.save_pretrained(folder)
    return fast


def make_model(folder: Path, vocab_size: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=D_MODEL,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg).eval()
    model.save_pretrained(folder)
    return model


def corpus_texts(n: int = 120, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 20))]
        words = [w for w in words if w != "dallas"]
        if rng.random() < 0.5:  # about half the passages mention dallas, at a random place
            words.insert(rng.randrange(len(words)), "dallas")
        texts.append(" ".join(words))
    return texts


def write_transcoders(
    folder: Path, cache_dir: Path, W_U: torch.Tensor, dallas_id: int, texas_id: int, kind: str = "relu", seed: int = 1
) -> None:
    """Random sparse transcoders for both layers, with the planted feature on layer 1."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    import json

    m = json.loads((cache_dir / "manifest.json").read_text())
    n, t, d = m["complete_seqs"], m["seq_len"], m["d_model"]
    toks = torch.from_numpy(np.fromfile(cache_dir / "tokens.bin", dtype=np.int32)[: n * t].astype(np.int64))
    g = torch.Generator().manual_seed(seed)
    files = []
    for layer in range(2):
        raw = np.fromfile(cache_dir / f"layer_{layer}_in.bin", dtype=np.uint16)[: n * t * d]
        x = torch.from_numpy(raw.view(np.int16).copy()).view(torch.bfloat16).float().view(n * t, d)
        body = torch.ones(n * t, dtype=torch.bool)
        body[::t] = False  # BOS rows
        W_enc = torch.randn(D_T, d, generator=g) / d**0.5
        scale = (x[body] @ W_enc.T).std(0)
        W_enc = W_enc / scale[:, None]  # unit-variance pre-activations
        b_enc = torch.full((D_T,), -1.5)  # ~7% density
        W_dec = torch.randn(D_T, d, generator=g) / d**0.5
        if layer == PLANT_LAYER:
            on = body & (toks == dallas_id)
            off = body & (toks != dallas_id)
            direction = x[on].mean(0) - x[off].mean(0)
            direction = direction / direction.norm()
            p_on, p_off = x[on] @ direction, x[off] @ direction
            assert p_on.min() > p_off.max(), "planted direction does not separate dallas (tiny-model fixture)"
            mid = float(p_on.min() + p_off.max()) / 2
            factor = 1.0 / (float(p_on.min()) - mid)  # pre-activation exactly 1 at the weakest dallas
            factor *= 5.0 if kind == "topk" else 1.0  # and far above the k-th largest pre-activation
            W_enc[PLANT_FEATURE] = direction * factor
            b_enc[PLANT_FEATURE] = -mid * factor
            W_dec[PLANT_FEATURE] = W_U[texas_id] / W_U[texas_id].norm()
        tensors = {"W_enc": W_enc.contiguous(), "b_enc": b_enc, "W_dec": W_dec.contiguous(), "b_dec": torch.zeros(d)}
        if kind == "topk":
            tensors["k"] = torch.tensor([6])
            b_top = torch.zeros(D_T)
            b_top[PLANT_FEATURE] = b_enc[PLANT_FEATURE] if layer == PLANT_LAYER else 0.0
            tensors["b_enc"] = b_top
        if kind == "jumprelu":
            tensors["activation_function.threshold"] = torch.full((D_T,), 0.05)
        name = f"layer_{layer}.safetensors"
        save_file(tensors, str(folder / name))
        files.append(name)
    cfg = {
        "model_kind": "transcoder_set",
        "model_name": "tiny",
        "feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "mlp.hook_out",
        "transcoders": files,
    }
    if kind != "relu":
        cfg["activation"] = kind
    if kind == "topk":
        cfg["k"] = 6
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
