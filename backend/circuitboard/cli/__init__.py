"""The `circuitboard` command: every command-line entry point lives in this package, one module per group.

The CLI is the top layer: it may import every stage below it (engine, data, training, atlas, store, jobs,
api), and nothing imports it. Heavy imports (torch, transformers, uvicorn) stay inside the command functions
so that `circuitboard --help` starts fast.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys

# OpenMP threads spin between parallel regions by default. The row loop is many mid-sized matmuls, so on cores
# shared with anything else (a server's other threads, a second worker, CI) each region waits for a descheduled
# spinner: a 2,000-node trace took 6-17 s instead of 6.5 s beside a test run (bench/README.md, "OpenMP wait
# policy"). Sleeping threads cost little when the machine is idle. Read once, when torch starts its pool: so set
# here, before any command imports torch; an explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from circuitboard import __version__  # noqa: E402  (after the environment above, before torch)

# Listed in data-flow order: each module of this package exposes `register(subparsers)`.
_COMMAND_MODULES = ("trace", "training", "prepare", "atlas", "serve", "worker", "db", "users")
# Commands whose module is imported alone when the command line names them: a one-shot `circuitboard trace`
# does not pay for the server's settings, presets and training imports (bench/README.md, start-up).
_ALONE = {"trace": "trace", "intervene": "trace", "tiny-model": "trace"}


def build_parser(modules: tuple[str, ...] = _COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="circuitboard",
        description="Attribution graphs of language models with transcoders: trace, intervene, train, serve.",
    )
    parser.add_argument("--version", action="version", version=f"circuitboard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in modules:
        importlib.import_module(f"circuitboard.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    alone = _ALONE.get(argv[0]) if argv else None
    parser = build_parser((alone,) if alone else _COMMAND_MODULES)
    args = parser.parse_args(argv)
    result = args.func(args)
    return int(result or 0)


def run() -> None:
    """The `circuitboard` program (console script, `python -m circuitboard`): `main` as a process of its own.

    A one-shot command (`trace`, `intervene`, `tiny-model`) spends its start-up creating objects that live until
    it exits: importing torch makes ~180k. The cyclic collector gains nothing from them and costs a lot: its
    collections during the imports took 0.2 s and the interpreter's collections at exit 0.4 s of a 3.5 s
    `circuitboard trace` (bench/README.md). So it is off until the command has loaded what it needs
    (`loaded`), then runs over what is made after that only, and at exit everything left is frozen (not
    collected again): memory goes back to the system as the process ends. Servers and workers keep the
    collector as Python sets it, as do callers of `main` inside a process of their own (tests)."""
    argv = sys.argv[1:]
    one_shot = bool(argv) and argv[0] in _ALONE
    if one_shot:
        gc.disable()
    code = main(argv)
    if one_shot:
        gc.freeze()
    sys.exit(code)


def loaded() -> None:
    """A one-shot command has imported and loaded what it needs (see `run`): the collector runs again, over
    objects made from here on. Elsewhere (the collector was not turned off) it does nothing."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


if __name__ == "__main__":
    run()
