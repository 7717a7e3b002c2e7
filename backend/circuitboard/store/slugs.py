"""Readable, unique graph slugs: a few words of the prompt plus a short hash (`dallas-is-in-the-3f2a`)."""

from __future__ import annotations

import re
import secrets

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")
_WORD_RE = re.compile(r"[a-z0-9]+")
_MAX_WORDS = 4
_MAX_BASE_CHARS = 40


def is_valid_slug(slug: str) -> bool:
    return bool(SLUG_RE.match(slug))


def slug_base(text: str) -> str:
    words = _WORD_RE.findall(text.lower())
    base = "-".join(words[:_MAX_WORDS])[:_MAX_BASE_CHARS].strip("-")
    return base or "graph"


def slug_candidates(text: str, digest: str, requested: str | None = None) -> list[str]:
    """Candidates in order of preference; the caller takes the first free one.

    The hash suffix grows until the slug is unique, so two graphs of the same prompt with different
    parameters still get short, stable, readable slugs; after those come random ones."""
    out: list[str] = []
    if requested:
        out.append(requested)
        base = requested[:_MAX_BASE_CHARS]
    else:
        base = slug_base(text)
    out += [f"{base}-{digest[:n]}" for n in (4, 6, 8, 12, 16)]
    # The same file imported again and again has the same digest: then a fresh random suffix.
    out += [f"{base}-{secrets.token_hex(4)}" for _ in range(4)]
    return out
