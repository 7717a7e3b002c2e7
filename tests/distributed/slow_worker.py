"""A real distributed worker process (jobs/worker_process.py) whose engine is the real Engine, slowed down for
prompts that contain the word "slowly": each progress event then waits SLOW_S, so tests can act on a job while it
runs (cancel it, kill its worker). Run as `python slow_worker.py` with the worker's settings in the environment
(CIRCUITBOARD_*: preset, model and transcoder paths, queue and database URLs)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any

import torch

from circuitboard.config import Settings
from circuitboard.engine.session import Engine
from circuitboard.jobs.worker_process import WorkerProcess

SLOW_S = 0.1


class SlowEngine:
    """The real engine; attribute() sleeps on every progress event of a "slowly" prompt."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def attribute(self, prompt: str, params: Any, progress: Any = None, should_cancel: Any = None) -> dict:
        if "slowly" in prompt and progress is not None:
            report = progress

            def progress(p: Any) -> None:
                time.sleep(SLOW_S)
                report(p)

        return self._engine.attribute(prompt, params, progress=progress, should_cancel=should_cancel)


def main() -> int:
    torch.set_num_threads(1)
    settings = Settings()
    assert settings.model_path and settings.transcoders_path

    def load() -> Any:
        return SlowEngine(Engine.load(model=settings.model_path, transcoders=settings.transcoders_path, device="cpu"))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    process = WorkerProcess(settings, settings.preset, load)
    process.start()
    print(f"worker {process.name} {process.host.state}", flush=True)
    stop.wait()
    process.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
