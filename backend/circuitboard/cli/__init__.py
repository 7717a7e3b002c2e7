"""The `circuitboard` command: every command-line entry point lives in this package, one module per group.

The CLI is the top layer: it may import every stage below it (engine, data, training, atlas, store, jobs,
api), and nothing imports it. Heavy imports (torch, transformers, uvicorn) stay inside the command functions
so that `circuitboard --help` starts fast.
"""

from __future__ import annotations

import argparse
import sys

from circuitboard import __version__
from circuitboard.cli import atlas, db, prepare, serve, trace, training, users, worker

# Listed in data-flow order: each module exposes `register(subparsers)`.
_COMMAND_MODULES = (trace, training, prepare, atlas, serve, worker, db, users)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="circuitboard",
        description="Attribution graphs of language models with transcoders: trace, intervene, train, serve.",
    )
    parser.add_argument("--version", action="version", version=f"circuitboard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
