"""The cache key of a graph request (model, transcoder set, token ids, targets and every parameter), and the
dedup keys of the other job kinds: identical requests while one is queued or running get the same job."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from circuitboard.jobs.atlas import AtlasJob
from circuitboard.jobs.host import ModelHost
from circuitboard.jobs.models import GraphRequest, ValidateJob

# Bump when the engine's output for the same inputs changes meaning, so stale graphs are not served.
KEY_VERSION = 1


def cache_key(model: str, transcoders: str, fingerprint: str, token_ids: list[int], req: GraphRequest) -> str:
    """`fingerprint` identifies the exact weight and transcoder files, so same-named folders never share graphs."""
    # The token ids stand for the prompt; the slug only names the result. `logit_diff` and `target_features` joined
    # the parameters after version 1 of the key: left out while unset, so the keys of stored graphs stay what they were.
    exclude = {"prompt", "slug"} | {name for name in ("logit_diff", "target_features") if getattr(req, name) is None}
    payload = {
        "v": KEY_VERSION,
        "model": model,
        "transcoders": transcoders,
        "fingerprint": fingerprint,
        "token_ids": list(token_ids),
        **req.model_dump(exclude=exclude),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def request_key(host: ModelHost, req: GraphRequest) -> str:
    """The cache key of `req` on the host's engine. Raises EngineUnavailable, PromptTooLong."""
    model, transcoders = host.names()
    ids = host.prompt_ids(req.prompt)
    return cache_key(model, transcoders, host.fingerprint(), ids, req)


def _digest(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def validation_key(job: ValidateJob) -> str:
    """Same graph, same supernodes, targets and modes (defaults filled in): the same validation. A slug names one
    graph for good (a deleted slug is never given to another graph)."""
    return _digest({"v": KEY_VERSION, "kind": "validate", **job.model_dump(mode="json")})


def atlas_key(queue: str | None, job: AtlasJob) -> str:
    """Same preset (its queue; None: this server's own), same parameters: the same atlas build."""
    return _digest({"v": KEY_VERSION, "kind": "atlas", "queue": queue, **job.model_dump(mode="json")})
