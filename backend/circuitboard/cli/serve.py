"""`circuitboard serve`: run the web app."""

from __future__ import annotations

import argparse

from circuitboard.config import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="run the web app (API + pages)")
    defaults = Settings()
    p.add_argument("host", nargs="?", default=None, help=f"address to listen on (default {defaults.host})")
    p.add_argument("port", nargs="?", type=int, default=None, help=f"port (default {defaults.port})")
    p.add_argument("--preset", default=None, help=f"model preset (default {defaults.preset})")
    p.add_argument("--model", default=None, help="model folder, GGUF file or hub id (overrides the preset)")
    p.add_argument("--transcoders", default=None, help="transcoder set folder (overrides the preset)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--db", default=None, help="SQLAlchemy database URL (default: sqlite file in data/)")
    p.add_argument("--no-engine", action="store_true", help="load no model: browse, import and export only")
    p.add_argument(
        "--queue",
        default=None,
        help="Redis URL (redis://HOST:6379/0): distributed mode, jobs run on `circuitboard worker` processes",
    )
    p.add_argument(
        "--auth",
        choices=["auto", "required", "off"],
        default=None,
        help="accounts: 'auto' (default) requires them when serving on a non-loopback address",
    )
    p.set_defaults(func=serve)


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {
        "host": args.host,
        "port": args.port,
        "preset": args.preset,
        "model_path": args.model,
        "transcoders_path": args.transcoders,
        "device": args.device,
        "database_url": args.db,
        "auth": args.auth,
        "queue_url": args.queue,
    }
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    if args.no_engine:
        settings.load_engine = False
    return settings


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from circuitboard.api.app import create_app

    settings = settings_from_args(args)
    app = create_app(settings)
    mode = "shared: accounts required (circuitboard users add NAME)" if settings.auth_required else "single user"
    if settings.queue_url:
        mode += "; distributed: jobs run on `circuitboard worker` processes"
    print(f"Circuitboard on {settings.url} ({mode})", flush=True)
    # A bounded graceful shutdown: open event streams must not keep the process alive.
    uvicorn.run(app, host=settings.host, port=settings.port, timeout_graceful_shutdown=3, log_level="info")
    return 0
