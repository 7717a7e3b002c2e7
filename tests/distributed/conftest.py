from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: services.py

from cluster import Cluster  # noqa: E402

from circuitboard.devtools.tiny import build_tiny_checkpoint  # noqa: E402
from services import redis_server, redis_url  # noqa: E402, F401


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Two tiny presets of different models: "tiny-a" (llama) and "tiny-b" (qwen2)."""
    root = tmp_path_factory.mktemp("presets")
    return {
        "tiny-a": build_tiny_checkpoint(root / "tiny-a", arch="llama", seed=0),
        "tiny-b": build_tiny_checkpoint(root / "tiny-b", arch="qwen2", seed=1),
    }


@pytest.fixture(scope="module")
def module_redis(redis_server):  # noqa: F811
    """One Redis for the module's cluster (flushed once at its start)."""
    redis_server.flush()
    return redis_server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, module_redis, checkpoints):
    c = Cluster(tmp_path_factory.mktemp("cluster"), module_redis.url, checkpoints)
    yield c
    c.close()
