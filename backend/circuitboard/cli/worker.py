"""`circuitboard worker`: a distributed worker process (docs/architecture.md, "Distributed mode")."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from circuitboard.config import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "worker", help="load one preset's model and run its jobs from the Redis queue (distributed mode)"
    )
    defaults = Settings()
    p.add_argument("--preset", default=None, help=f"model preset whose queue to serve (default {defaults.preset})")
    p.add_argument("--model", default=None, help="model folder, GGUF file or hub id (overrides the preset's)")
    p.add_argument("--transcoders", default=None, help="transcoder set folder (overrides the preset's)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--queue", default=None, help="Redis URL (default CIRCUITBOARD_QUEUE_URL)")
    p.add_argument("--db", default=None, help="SQLAlchemy database URL the API uses (default: sqlite file in data/)")
    p.set_defaults(func=worker)


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {
        "preset": args.preset,
        "model_path": args.model,
        "transcoders_path": args.transcoders,
        "device": args.device,
        "queue_url": args.queue,
        "database_url": args.db,
    }
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def worker(args: argparse.Namespace) -> int:
    from circuitboard.api.engine_factory import default_engine_factory
    from circuitboard.jobs.worker_process import WorkerProcess

    settings = settings_from_args(args)
    if not settings.queue_url:
        print("circuitboard worker: no queue; pass --queue redis://HOST:6379/0 or set CIRCUITBOARD_QUEUE_URL")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    process = WorkerProcess(settings, settings.preset, default_engine_factory(settings))
    process.start()
    print(f"circuitboard worker {process.name}: preset {settings.preset!r}, engine {process.host.state}", flush=True)
    stop.wait()
    process.stop()
    return 0 if process.host.state == "ready" else 1
