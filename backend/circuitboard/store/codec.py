"""Graph JSON <-> compressed bytes. Gzip (not raw zlib) so the API can send the stored bytes as-is with
`Content-Encoding: gzip` to browsers, without decompressing a many-megabyte graph on every read."""

from __future__ import annotations

import gzip
import json
from typing import Any

_LEVEL = 6


def encode_graph(graph: dict[str, Any]) -> tuple[bytes, int]:
    """Returns (gzip bytes, uncompressed size)."""
    raw = json.dumps(graph, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    # mtime=0 keeps the bytes a pure function of the graph.
    return gzip.compress(raw, compresslevel=_LEVEL, mtime=0), len(raw)


def decode_graph(blob: bytes) -> dict[str, Any]:
    return json.loads(gzip.decompress(blob))
