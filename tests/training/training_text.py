"""Random English-looking text for the training tests."""

from __future__ import annotations

import random

WORDS = (
    "the of and to in is was for on that with as by at from his her their city river music war king "
    "queen ship house garden science water light stone north south winter summer small great old new "
    "red blue green paper letter road bridge market school church station island mountain"
).split()


def make_text(seed: int, n_docs: int = 40, words: int = 120) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for i in range(n_docs):
        sents = []
        for _ in range(words // 12):
            s = " ".join(rng.choice(WORDS) for _ in range(12))
            sents.append(s[0].upper() + s[1:] + ".")
        docs.append(f"Document {i}. " + " ".join(sents))
    return docs
