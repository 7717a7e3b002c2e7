"""Feature labels: a deterministic short label from the statistics, optional LLM explanations, user overrides.

`auto_label` reads `→ Texas · on "Dallas"`: the token the feature most promotes through the unembedding, then
the input token(s) carrying most of its activation. `describe` says more (issue 17): an early-layer feature is
labelled by what it reads (`on "the" after "in" · 62%`), a late one by what it writes (`→ "Paris"/"France" ·
41%`), a middle one by its more certain side first; the label names the tokens it is based on, and the
percentage is how much of the evidence they carry (the share of the feature's activation mass on the tokens it
reads, or of its top decoder-logit mass on the tokens it writes). Both are computed without a network.

LLM explanations are opt-in via env (CIRCUITBOARD_LLM_BASE_URL, CIRCUITBOARD_LLM_API_KEY,
CIRCUITBOARD_LLM_MODEL) against any OpenAI-compatible endpoint, cached in the atlas.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field

MAX_TOKEN_CHARS = 18


def show_token(text: str) -> str:
    """A token as a label shows it: trimmed, whitespace made visible, long tokens shortened."""
    if text is None:
        return ""
    stripped = text.strip()
    if not stripped:
        if "\n" in text:
            return "⏎"
        if "\t" in text:
            return "⇥"
        return "␣" if text else "∅"
    stripped = stripped.replace("\n", "⏎")
    return stripped if len(stripped) <= MAX_TOKEN_CHARS else stripped[: MAX_TOKEN_CHARS - 1] + "…"


def auto_label(top_logits: list[str], inputs: list[tuple[str, float]], alive: bool = True) -> str:
    """`→ OUT · on "IN"` (or `on "A"/"B"` when a second input token carries at least half as much)."""
    if not alive:
        return "dead feature"
    parts = []
    if top_logits:
        parts.append(f"→ {show_token(top_logits[0])}")
    if inputs:
        first = inputs[0][1]
        shown = [show_token(inputs[0][0])]
        if len(inputs) > 1 and first > 0 and inputs[1][1] >= 0.5 * first:
            shown.append(show_token(inputs[1][0]))
        parts.append("on " + "/".join(f'"{t}"' for t in shown))
    return " · ".join(parts) if parts else "(no statistics)"


# ---------------------------------------------------------------------------------------------------------
# Labels that say more (issue 17)
# ---------------------------------------------------------------------------------------------------------

MAX_NAMED = 3  # tokens a label names on each side
NAME_RATIO = 0.3  # a further input token is named when it carries at least this share of the first one's mass
OUTPUT_RATIO = 0.7  # ... a further output token when its logit is at least this share of the top one's
CONTEXT_SHARE = 0.5  # "after X" when X precedes at least this share of the top activations


@dataclass
class Evidence:
    """What a label is made from: one feature's statistics in the atlas."""

    layer: int
    n_layers: int
    inputs: list[tuple[str, float]]  # input tokens and their activation mass, most first
    total_mass: float  # the feature's whole activation mass (inputs are only the top few)
    outputs: list[tuple[str, float]]  # decoder logits through the unembedding, most promoted first
    before: list[tuple[str, int]] = field(default_factory=list)  # tokens before its top activations, most first


@dataclass
class Label:
    text: str
    reads: list[str]  # the input tokens the label names
    writes: list[str]  # the output tokens it names
    read_share: float  # share of the activation mass that falls on `reads`
    write_share: float  # share of the top decoder-logit mass that `writes` carry
    confidence: float  # the share of the side the label leads with
    side: str  # "reads" | "writes"


def named_inputs(inputs: list[tuple[str, float]]) -> list[int]:
    """Indices of the input tokens a label names: the first, then those with at least NAME_RATIO of its mass."""
    if not inputs or inputs[0][1] <= 0:
        return []
    first = inputs[0][1]
    return [i for i, (_, m) in enumerate(inputs[:MAX_NAMED]) if m >= NAME_RATIO * first]


def named_outputs(outputs: list[tuple[str, float]]) -> list[int]:
    """Indices of the output tokens a label names: the top one, then those within OUTPUT_RATIO of it."""
    if not outputs or outputs[0][1] <= 0:
        return []
    top = outputs[0][1]
    return [i for i, (_, v) in enumerate(outputs[:MAX_NAMED]) if v >= OUTPUT_RATIO * top]


def write_share(outputs: list[tuple[str, float]], named: list[int]) -> float:
    """Share of the positive top-k decoder-logit mass that the named output tokens carry."""
    total = sum(max(v, 0.0) for _, v in outputs)
    return sum(max(outputs[i][1], 0.0) for i in named) / total if total > 0 else 0.0


def describe(ev: Evidence) -> Label:
    """The label of one live feature (see the module docstring); a middle-layer label names both sides and
    gives both shares, input first (`on "Dallas" → "Texas" · 50/60%`)."""
    r_idx, w_idx = named_inputs(ev.inputs), named_outputs(ev.outputs)
    reads, writes = [ev.inputs[i][0] for i in r_idx], [ev.outputs[i][0] for i in w_idx]
    r_share = sum(ev.inputs[i][1] for i in r_idx) / ev.total_mass if ev.total_mass > 0 else 0.0
    w_share = write_share(ev.outputs, w_idx)
    if not reads and not writes:
        return Label("(no statistics)", [], [], 0.0, 0.0, 0.0, "reads")
    depth = ev.layer / max(ev.n_layers - 1, 1)
    read_text = _reads_text(reads, ev.before)
    write_text = "→ " + "/".join(f'"{show_token(t)}"' for t in writes)
    if reads and writes and 1 / 3 <= depth <= 2 / 3:
        side = "reads" if r_share >= w_share else "writes"
        text = f"{read_text} {write_text} · {round(100 * r_share)}/{round(100 * w_share)}%"
    else:
        side = "reads" if (depth < 1 / 3 and reads) or not writes else "writes"
        share = r_share if side == "reads" else w_share
        text = f"{read_text if side == 'reads' else write_text} · {round(100 * share)}%"
    conf = r_share if side == "reads" else w_share
    return Label(text, reads, writes, r_share, w_share, conf, side)


def label_detail(record: dict, n_layers: int) -> dict:
    """`describe` of a feature record (`records.feature_record`, what the API serves): the label's text, the tokens
    it names on each side, the shares of the evidence they carry, and the side it leads with."""
    if record["n_active"] <= 0:
        return asdict(Label("dead feature", [], [], 0.0, 0.0, 0.0, "reads"))
    before = Counter(ex["tokens"][ex["center"] - 1] for ex in record["examples"] if ex["center"] > 0)
    evidence = Evidence(
        layer=record["layer"],
        n_layers=n_layers,
        inputs=[(t["text"], t["value"]) for t in record["top_input_tokens"]],
        total_mass=record["mean_act"] * record["n_active"],
        outputs=[(t["text"], t["value"]) for t in record["top_logits"]],
        before=before.most_common(),
    )
    return asdict(describe(evidence))


def _reads_text(reads: list[str], before: list[tuple[str, int]]) -> str:
    text = "on " + "/".join(f'"{show_token(t)}"' for t in reads) if reads else ""
    total = sum(c for _, c in before)
    if reads and total and before[0][1] >= CONTEXT_SHARE * total:
        text += f' after "{show_token(before[0][0])}"'
    return text


# ---------------------------------------------------------------------------------------------------------
# LLM explanations (optional)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class LLMConfig:
    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 30.0

    @staticmethod
    def from_env() -> LLMConfig | None:
        base = os.environ.get("CIRCUITBOARD_LLM_BASE_URL")
        model = os.environ.get("CIRCUITBOARD_LLM_MODEL")
        if not base or not model:
            return None
        return LLMConfig(base_url=base.rstrip("/"), model=model, api_key=os.environ.get("CIRCUITBOARD_LLM_API_KEY"))


def explanation_prompt(record: dict, max_examples: int = 8) -> str:
    """Plain-text prompt from a feature record (the API's shape): examples with the peak token in «»."""
    lines = [
        "Here are text excerpts where one feature of a language model's transcoder is active. The token where it",
        "is most active is marked «like this»; numbers are its activation.",
        "",
    ]
    for ex in record.get("examples", [])[:max_examples]:
        toks, acts, c = ex["tokens"], ex["acts"], ex["center"]
        text = "".join(f"«{t}»" if i == c else t for i, t in enumerate(toks))
        lines.append(f"- ({acts[c]:.2f}) {text!r}")
    top = ", ".join(repr(x["text"]) for x in record.get("top_logits", [])[:8])
    bottom = ", ".join(repr(x["text"]) for x in record.get("bottom_logits", [])[:5])
    lines += [
        "",
        f"Tokens it promotes as the next token: {top}",
        f"Tokens it suppresses: {bottom}",
        "",
        "In at most 12 words, what does this feature detect or do? Answer with the description only.",
    ]
    return "\n".join(lines)


def request_explanation(record: dict, cfg: LLMConfig) -> str:
    """One chat-completions call; raises on HTTP errors (the caller decides whether that matters)."""
    import httpx

    headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
    body = {
        "model": cfg.model,
        "temperature": 0,
        "messages": [
            {"role": "system", "content": "You label features of neural networks concisely."},
            {"role": "user", "content": explanation_prompt(record)},
        ],
    }
    url = cfg.base_url + "/chat/completions"
    resp = httpx.post(url, json=body, headers=headers, timeout=cfg.timeout_s)
    resp.raise_for_status()
    text = resp.json()["choices"][0]["message"]["content"]
    return " ".join(str(text).split())[:300]


def explain(store, layer: int, index: int, cfg: LLMConfig | None = None, refresh: bool = False) -> str | None:
    """Cached explanation of one feature; None when no endpoint is configured."""
    from circuitboard.atlas.records import feature_record

    cfg = cfg or LLMConfig.from_env()
    if cfg is None:
        return None
    if not refresh:
        cached = store.get_explanation(layer, index, cfg.model)
        if cached is not None:
            return cached
    record = feature_record(store, layer, index)
    if record is None:
        raise KeyError(f"no feature {layer}/{index}")
    text = request_explanation(record, cfg)
    store.put_explanation(layer, index, cfg.model, text)
    return text
