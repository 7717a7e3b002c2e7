"""The cache key of a graph request: model, transcoder set, token ids, targets and every parameter."""

from __future__ import annotations

import hashlib
import json

from circuitboard.jobs.models import GraphRequest

# Bump when the engine's output for the same inputs changes meaning, so stale graphs are not served.
KEY_VERSION = 1


def cache_key(model: str, transcoders: str, fingerprint: str, token_ids: list[int], req: GraphRequest) -> str:
    """`fingerprint` identifies the exact weight and transcoder files, so same-named folders never share graphs."""
    params = req.model_dump(exclude={"prompt", "slug"})  # the token ids stand for the prompt
    payload = {
        "v": KEY_VERSION,
        "model": model,
        "transcoders": transcoders,
        "fingerprint": fingerprint,
        "token_ids": list(token_ids),
        **params,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
