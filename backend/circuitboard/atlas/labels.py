"""Feature labels: a deterministic short label from the statistics, optional LLM explanations, user overrides.

The automatic label reads `→ Texas · on "Dallas"`: the token the feature most promotes through the
unembedding, then the input token(s) carrying most of its activation. It is computed at build time for every
feature and never needs a network. LLM explanations are opt-in via env (CIRCUITBOARD_LLM_BASE_URL,
CIRCUITBOARD_LLM_API_KEY, CIRCUITBOARD_LLM_MODEL) against any OpenAI-compatible endpoint, cached in the atlas.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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
