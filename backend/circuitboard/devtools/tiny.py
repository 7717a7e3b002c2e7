"""Tiny random checkpoints of every supported architecture, for tests and offline demos.

A checkpoint is a transformers model folder (random weights from a config, no download), a small byte-level
BPE tokenizer trained on a built-in paragraph, and a random transcoder set in circuit-tracer's layout.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GPT2Config,
    LlamaConfig,
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


def tiny_config(arch: str, vocab_size: int, n_layers: int = 3, d_model: int = 64):
    common = dict(vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    dec = dict(
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
        return Qwen2Config(**dec)
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


def build_tiny_model(arch: str = "llama", seed: int = 0, n_layers: int = 3, d_model: int = 64):
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
def fit_decoders(model, tset: TranscoderSet, *, n_seqs: int = 48, seq_len: int = 24, seed: int = 0) -> float:
    """Least-squares decoders for the random encoders, so tiny graphs have features that matter.

    Returns the mean explained variance of the MLP outputs. Per-layer sets only (CLTs keep random decoders).
    """
    if tset.cross_layer:
        return 0.0
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, model.config.vocab_size, (n_seqs, seq_len), generator=g)
    ins, outs = {}, {}
    handles = []
    for layer in range(tset.n_layers):
        mod_in, mod_out = mlp_io_modules(model, layer)
        for mod, store in ((mod_in, ins), (mod_out, outs)):
            handles.append(
                mod.register_forward_hook(
                    lambda m, a, o, lay=layer, st=store: st.__setitem__(lay, o.reshape(-1, o.shape[-1]))
                )
            )
    try:
        model(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    evs = []
    for layer, lw in enumerate(tset.layers):
        x, y = ins[layer].float(), outs[layer].float()
        target = y - (tset.skip(layer, x) if lw.W_skip is not None else 0)
        acts = tset.encode(layer, x)
        design = torch.cat([acts, torch.ones(len(acts), 1)], 1)
        ridge = 1e-3 * torch.eye(design.shape[1])
        sol = torch.linalg.solve(design.T @ design + ridge, design.T @ target)
        lw.W_dec, lw.b_dec = sol[:-1].contiguous(), sol[-1].contiguous()
        resid = target - design @ sol
        evs.append(1 - float(resid.var(0).sum() / y.var(0).sum()))
    return sum(evs) / len(evs)
