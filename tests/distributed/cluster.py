"""A distributed Circuitboard on this machine for tests and the scale bench: real `circuitboard worker` processes
(or slow_worker.py, the same worker with a slowed engine) and API replicas in distributed mode (real uvicorn
servers on loopback ports), sharing one SQLite file and one Redis server on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis
import uvicorn

from circuitboard.api.app import create_app
from circuitboard.config import Settings
from circuitboard.store import Store

HERE = Path(__file__).resolve().parent
CLI = "import sys; from circuitboard.cli import main; sys.exit(main())"
# Fast fault handling: a worker beats every 0.5 s, is dead after 2 s of silence, and every broker command runs
# the queue maintenance that redelivers a dead worker's job.
FAST = {
    "CIRCUITBOARD_WORKER_HEARTBEAT_S": "0.5",
    "CIRCUITBOARD_QUEUE_HEARTBEAT_TIMEOUT_MS": "2000",
    "CIRCUITBOARD_QUEUE_MAINTENANCE_CHANCE": "1000000",
    "CIRCUITBOARD_QUEUE_POLL_MS": "50",
    "CIRCUITBOARD_QUEUE_LOST_AFTER_S": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        self.out = log.open("wb")
        self.popen = subprocess.Popen(args, env=env, stdout=self.out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self) -> None:
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self.out.close()

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]


class Api:
    """An API replica: a real uvicorn server on a free loopback port, in a thread of this process (its model-free
    imports are already loaded here, so it starts in a second rather than in a loaded machine's half minute)."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name, self.settings = name, settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 30), **kw)

    def wait_up(self, timeout: float = 60) -> Api:
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


class Cluster:
    def __init__(self, root: Path, redis_url: str, checkpoints: dict[str, tuple[Path, Path]]) -> None:
        self.root, self.redis_url, self.checkpoints = root, redis_url, checkpoints
        self.db_url = f"sqlite:///{root / 'cb.sqlite'}"
        Store(self.db_url).close()  # migrated once, before processes race to do it
        self.redis = redis.Redis.from_url(redis_url)
        self.procs: list[Proc] = []
        self.apis: list[Api] = []

    def env(self, preset: str, **extra: str) -> dict[str, str]:
        env = {**os.environ, **FAST}
        env.update(
            CIRCUITBOARD_QUEUE_URL=self.redis_url,
            CIRCUITBOARD_DATABASE_URL=self.db_url,
            CIRCUITBOARD_PRESET=preset,
            CIRCUITBOARD_DATA_DIR=str(self.root),
            CIRCUITBOARD_MODELS_DIR=str(self.root / "models"),  # hermetic: never the repo's presets
            CIRCUITBOARD_FRONTEND_DIST=str(self.root / "no-frontend"),
        )
        if preset in self.checkpoints:
            model, transcoders = self.checkpoints[preset]
            env.update(CIRCUITBOARD_MODEL_PATH=str(model), CIRCUITBOARD_TRANSCODERS_PATH=str(transcoders))
        env.update(extra)
        return env

    def worker(self, preset: str, slow: bool = True, **env: str) -> Proc:
        """slow: slow_worker.py (the same WorkerProcess, its engine slowed for "slowly" prompts); else the CLI."""
        n = len(self.procs)
        if slow:
            args = [sys.executable, str(HERE / "slow_worker.py")]
        else:
            args = [sys.executable, "-c", CLI, "worker", "--preset", preset, "--device", "cpu"]
        proc = Proc(f"worker-{preset}-{n}", args, self.env(preset, **env), self.root / f"worker-{n}.log")
        self.procs.append(proc)
        return proc

    def api(self, preset: str, **settings: Any) -> Api:
        api = Api(
            f"api-{preset}-{len(self.apis)}",
            Settings(
                queue_url=self.redis_url,
                database_url=self.db_url,
                preset=preset,
                data_dir=self.root,
                models_dir=self.root / "models",
                frontend_dist=self.root / "no-frontend",
                **settings,
            ),
        )
        self.apis.append(api)
        return api.wait_up()

    def ready_workers(self, preset: str) -> list[dict[str, Any]]:
        from circuitboard.jobs.registry import WorkerRegistry

        beats = WorkerRegistry(self.redis, 0.5).workers(preset)
        return [b.model_dump() for b in beats if b.state == "ready"]

    def wait_workers(self, preset: str, n: int, timeout: float = 120) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = self.ready_workers(preset)
            if len(ready) >= n:
                return ready
            dead = [p for p in self.procs if p.name.startswith(f"worker-{preset}") and not p.alive()]
            if dead:
                raise RuntimeError(f"{dead[0].name} exited:\n{dead[0].tail()}")
            time.sleep(0.1)
        raise RuntimeError(f"{n} workers of {preset!r} not ready: {self.ready_workers(preset)}")

    def close(self) -> None:
        for api in self.apis:
            api.stop()
        for proc in self.procs:
            proc.stop()
        self.redis.close()


def wait_job(client: httpx.Client, job_id: str, timeout: float = 90, until: tuple[str, ...] = ()) -> dict[str, Any]:
    """Poll a job until it ends (or reaches a status of `until`)."""
    deadline = time.monotonic() + timeout
    ends = until or ("done", "failed", "cancelled")
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ends or time.monotonic() > deadline:
            return job
        time.sleep(0.05)
