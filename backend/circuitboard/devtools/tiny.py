"""Tiny random checkpoints of every supported architecture, for tests and offline demos.

A checkpoint is a transformers model folder (random weights from a config, no download), a small byte-level
BPE tokenizer trained on a built-in paragraph, and a random transcoder set in circuit-tracer's layout.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GPT2Config,
    LlamaConfig,
    PreTrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

from circuitboard.engine.adapters import mlp_io_modules
from circuitboard.engine.transcoders import TranscoderSet, random_transcoder_set, save_transcoder_set

ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma2", "gemma3", "gpt2")

_TEXT = """The capital of France is Paris. The capital of Texas is Austin, and Dallas is in the state of Texas.
The opposite of hot is cold. The opposite of big is small. Michael Jordan plays the sport of basketball.
He saw a carrot and had to grab it; his hunger was like a starving rabbit. Roses are red, violets are blue.
One plus one is two. 1 + 1 = 2. 36 + 59 = 95. The quick brown fox jumps over the lazy dog.
In the beginning the model reads the prompt, and every feature writes into the residual stream."""


def build_tokenizer(vocab_size: int = 384) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_TEXT] * 4, trainer=trainer)
    bos = tok.token_to_id("<bos>")
    # Like Gemma's tokenizer: every encoding starts with BOS, which carries no feature nodes.
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


class _TokenIds(TypedDict):
    vocab_size: int
    bos_token_id: int
    eos_token_id: int
    pad_token_id: int


class _DecoderShape(_TokenIds):
    """What every decoder-only family's config takes; a TypedDict so each `**` is type-checked key by key."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int
    tie_word_embeddings: bool


def tiny_config(arch: str, vocab_size: int, n_layers: int = 3, d_model: int = 64) -> PreTrainedConfig:
    common = _TokenIds(vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    dec = _DecoderShape(
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=d_model // 4,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        **common,
    )
    if arch == "llama":
        return LlamaConfig(**dec)
    if arch == "qwen2":
        return Qwen2Config(**dec)  # type: ignore[misc]  # takes head_dim at run time; its signature omits it
    if arch == "qwen3":
        return Qwen3Config(**dec)
    if arch == "gemma2":
        return Gemma2Config(
            **dec,
            query_pre_attn_scalar=d_model // 4,
            sliding_window=4,
            final_logit_softcapping=30.0,
            attn_logit_softcapping=50.0,
        )
    if arch == "gemma3":
        return Gemma3TextConfig(
            **dec,
            query_pre_attn_scalar=d_model // 4,
            sliding_window=4,
            layer_types=["sliding_attention", "full_attention"] * (n_layers // 2)
            + ["sliding_attention"] * (n_layers % 2),
        )
    if arch == "gpt2":
        return GPT2Config(n_embd=d_model, n_layer=n_layers, n_head=4, n_positions=256, **common)
    raise ValueError(f"unknown architecture {arch!r}; choose from {ARCHITECTURES}")


def build_tiny_model(
    arch: str = "llama", seed: int = 0, n_layers: int = 3, d_model: int = 64
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    cfg = tiny_config(arch, len(tokenizer), n_layers, d_model)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    # Random init gives near-zero residual norms for some archs; larger weights make the test maths non-trivial.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.2 if "emb" in name or "wte" in name or "wpe" in name else 1.0 / p.shape[-1] ** 0.5)
            elif "norm" in name or "ln" in name:
                p.normal_(0.0 if arch.startswith("gemma") else 1.0, 0.1)
    model.eval()
    return model, tokenizer


def build_tiny_checkpoint(
    out_dir: str | Path,
    arch: str = "llama",
    seed: int = 0,
    *,
    n_layers: int = 3,
    d_model: int = 64,
    d_transcoder: int = 128,
    kind: str = "relu",
    cross_layer: bool = False,
    skip: bool = False,
) -> tuple[Path, Path]:
    """Write `out_dir/model` (model + tokenizer) and `out_dir/transcoders`; return both paths."""
    out = Path(out_dir)
    model, tokenizer = build_tiny_model(arch, seed, n_layers, d_model)
    model_dir, tc_dir = out / "model", out / "transcoders"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    tset = random_transcoder_set(
        n_layers, d_model, d_transcoder, kind=kind, cross_layer=cross_layer, skip=skip, seed=seed, density=0.1
    )
    fit_decoders(model, tset, seed=seed)
    tset.name = f"tiny-{arch}-{tset.name}"
    save_transcoder_set(tset, tc_dir, model_name=f"tiny-{arch}")
    return model_dir, tc_dir


@torch.no_grad()
def fit_decoders(
    model: PreTrainedModel, tset: TranscoderSet, *, n_seqs: int = 48, seq_len: int = 24, seed: int = 0
) -> float:
    """Least-squares decoders for the random encoders, so tiny graphs have features that matter.

    Returns the mean explained variance of the MLP outputs. Per-layer sets only (CLTs keep random decoders).
    """
    if tset.cross_layer:
        return 0.0
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, model.config.vocab_size, (n_seqs, seq_len), generator=g)
    ins: dict[int, torch.Tensor] = {}
    outs: dict[int, torch.Tensor] = {}

    def keep(store: dict[int, torch.Tensor], layer: int) -> Callable[..., None]:
        def hook(_module: torch.nn.Module, _args: object, out: torch.Tensor) -> None:
            store[layer] = out.reshape(-1, out.shape[-1])

        return hook

    handles = []
    for layer in range(tset.n_layers):
        mod_in, mod_out = mlp_io_modules(model, layer)
        handles += [mod_in.register_forward_hook(keep(ins, layer)), mod_out.register_forward_hook(keep(outs, layer))]
    try:
        model(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    evs = []
    for layer, lw in enumerate(tset.layers):
        x, y = ins[layer].float(), outs[layer].float()
        skip = tset.skip(layer, x)
        target = y if skip is None else y - skip
        acts = tset.encode(layer, x)
        design = torch.cat([acts, torch.ones(len(acts), 1)], 1)
        ridge = 1e-3 * torch.eye(design.shape[1])
        sol = torch.linalg.solve(design.T @ design + ridge, design.T @ target)
        lw.W_dec, lw.b_dec = sol[:-1].contiguous(), sol[-1].contiguous()
        resid = target - design @ sol
        evs.append(1 - float(resid.var(0).sum() / y.var(0).sum()))
    return sum(evs) / len(evs)
