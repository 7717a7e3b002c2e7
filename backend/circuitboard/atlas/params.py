"""What an atlas build is asked to keep per feature, and how it computes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AtlasParams:
    n_top: int = 20  # top-activating contexts kept per feature
    n_reservoir: int = 32  # uniform reservoir from which quantile examples are drawn
    n_bands: int = 4  # quantile bands below the top examples
    per_band: int = 3  # examples per band
    window_before: int = 12  # tokens of context before the activating token
    window_after: int = 4
    n_logits: int = 10
    n_inputs: int = 8
    hist_bins: int = 64  # must be a power of two (the doubling histogram merges bin pairs)
    chunk_tokens: int = 4096
    precision: str = "auto"  # "auto" (bf16 where this machine computes it fast: CUDA, AVX512-BF16/AMX), "bf16", "fp32"
    logit_vocab: str = "auto"  # "full" | "corpus" | "auto" (full vocab when ≤ 65,536 tokens)
    max_input_vocab: int = 16384  # cap on distinct token ids tracked for input-token statistics
    seed: int = 0
