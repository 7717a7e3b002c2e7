"""The `circuitboard` command: one subcommand per job, each registered by the module that owns it."""

from __future__ import annotations

import argparse
import importlib
import sys

from circuitboard import __version__

# Each module exposes `register(subparsers)`; listed in data-flow order.
_COMMAND_MODULES = (
    "circuitboard.engine.commands",
    "circuitboard.training.commands",
    "circuitboard.atlas.commands",
    "circuitboard.api.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="circuitboard",
        description="Attribution graphs of language models with transcoders: trace, intervene, train, serve.",
    )
    parser.add_argument("--version", action="version", version=f"circuitboard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # Only a missing command module is tolerated; a broken import inside one is a bug to surface.
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
