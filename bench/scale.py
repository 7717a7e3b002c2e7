"""Distributed mode on one machine: graphs per minute with 1 and 2 CPU workers on a tiny preset, queue latency
(enqueue -> a worker starts the job) and SSE latency (an event published to Redis -> an SSE client receives it).

    .venv/bin/python bench/scale.py                 # 24 graphs per run, 10 latency samples
    .venv/bin/python bench/scale.py --jobs 12 --samples 5

A private redis-server on a free loopback port (tests/services.py), a tiny random llama (devtools/tiny.py) as
the preset "tiny", real `circuitboard worker` processes (default settings, torch on 1 thread each) and one API
replica in distributed mode (uvicorn on loopback, in this process; tests/distributed/cluster.py). Everything lives
in a temporary folder and stops at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "distributed")]

from cluster import Cluster, wait_job  # noqa: E402

from circuitboard.config import RateLimits  # noqa: E402
from circuitboard.devtools.tiny import build_tiny_checkpoint  # noqa: E402
from circuitboard.store import Store  # noqa: E402
from services import RedisServer  # noqa: E402

# Defaults, not the tests' fast fault handling: the figures are what an operator gets.
DEFAULTS = {
    "CIRCUITBOARD_WORKER_HEARTBEAT_S": "2",
    "CIRCUITBOARD_QUEUE_HEARTBEAT_TIMEOUT_MS": "15000",
    "CIRCUITBOARD_QUEUE_MAINTENANCE_CHANCE": "100000",
    "CIRCUITBOARD_QUEUE_POLL_MS": "100",
    "CIRCUITBOARD_QUEUE_LOST_AFTER_S": "10",
}
PROMPT = "The capital of the state containing Dallas is number {i}"


def _post(c, prompt: str) -> str:
    r = c.post("/api/graphs", json={"prompt": prompt, "max_feature_nodes": 200})
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


def throughput(cluster: Cluster, api, n_jobs: int, tag: str) -> float:
    """Graphs per minute: `n_jobs` distinct prompts submitted at once, until the last is stored."""
    with api.client() as c:
        t0 = time.monotonic()
        ids = [_post(c, PROMPT.format(i=f"{tag}{i}")) for i in range(n_jobs)]
        for job_id in ids:
            assert wait_job(c, job_id, timeout=600)["status"] == "done"
        return n_jobs / (time.monotonic() - t0) * 60


def queue_latency(cluster: Cluster, api, samples: int) -> list[float]:
    """Seconds from the POST to the job's start on an idle worker (the database's started_at)."""
    store = Store(cluster.db_url)
    out = []
    try:
        with api.client() as c:
            for i in range(samples):
                t0 = time.time()
                job_id = _post(c, PROMPT.format(i=f"q{i}"))
                assert wait_job(c, job_id, timeout=120)["status"] == "done"
                started = store.jobs.get(job_id).started_at
                out.append(started.timestamp() - t0)
    finally:
        store.close()
    return out


def sse_latency(cluster: Cluster, api, samples: int) -> list[float]:
    """Seconds from an event's arrival on Redis (a subscriber in this process, standing in for the worker's
    PUBLISH: loopback adds well under a millisecond) to its arrival on the replica's SSE stream."""
    out: list[float] = []
    with api.client(timeout=120) as c:
        for i in range(samples):
            job_id = _post(c, PROMPT.format(i=f"s{i}"))
            on_redis: dict[str, float] = {}
            pubsub = cluster.redis.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(f"cb:events:{job_id}")
            stop = threading.Event()

            def listen(ps=pubsub, seen=on_redis, done=stop) -> None:
                while not done.is_set():
                    msg = ps.get_message(timeout=0.2)
                    if msg is not None:
                        seen.setdefault(msg["data"].decode(), time.monotonic())

            t = threading.Thread(target=listen, daemon=True)
            t.start()
            with c.stream("GET", f"/api/jobs/{job_id}/events") as r:
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        data, now = line.split(":", 1)[1].strip(), time.monotonic()
                        if data in on_redis:
                            out.append(now - on_redis[data])
                        if json.loads(data)["status"] in ("done", "failed", "cancelled"):
                            break
            stop.set()
            t.join(2)
            pubsub.close()
    return out


def _ms(xs: list[float]) -> str:
    xs = sorted(xs)
    return (
        f"median {statistics.median(xs) * 1000:.1f} ms, p90 {xs[int(0.9 * (len(xs) - 1))] * 1000:.1f} ms (n={len(xs)})"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=24, help="graphs per throughput run")
    ap.add_argument("--samples", type=int, default=10, help="jobs per latency measurement")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cb-scale-") as tmp:
        root = Path(tmp)
        redis_server = RedisServer(root)
        redis_server.start()
        ck = {"tiny": build_tiny_checkpoint(root / "tiny", arch="llama", seed=0)}
        cluster = Cluster(root, redis_server.url, ck)
        try:
            unlimited = RateLimits(traces="1000000/minute", per_ip_factor=1)
            api = cluster.api("tiny", max_queue=1000, rate_limits=unlimited)
            cluster.worker("tiny", slow=False, **DEFAULTS)
            cluster.wait_workers("tiny", 1)
            throughput(cluster, api, 2, "warm")  # first-trace costs (lazy imports, allocator) out of the figures
            one = throughput(cluster, api, args.jobs, "one")
            print(f"graphs per minute, 1 worker:  {one:.1f}", flush=True)
            queue = queue_latency(cluster, api, args.samples)
            sse = sse_latency(cluster, api, args.samples)
            cluster.worker("tiny", slow=False, **DEFAULTS)
            cluster.wait_workers("tiny", 2)
            two = throughput(cluster, api, args.jobs, "two")
        finally:
            cluster.close()
            redis_server.stop()
    print(f"graphs per minute, 2 workers: {two:.1f}  (x{two / one:.2f})")
    print(f"queue latency (POST -> worker starts the job): {_ms(queue)}")
    print(f"SSE latency (event on Redis -> SSE client): {_ms(sse)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
