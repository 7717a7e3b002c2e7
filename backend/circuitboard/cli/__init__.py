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

from circuitboard import __version__

# Listed in data-flow order: each module of this package exposes `register(subparsers)`.
_COMMAND_MODULES = ("trace", "training", "prepare", "atlas", "serve", "worker", "db", "users")
# Commands whose module is imported alone when the command line names them: a one-shot `circuitboard trace`
# does not pay for the server's settings, presets and training imports (bench/README.md, start-up).
_ALONE = {"trace": "trace", "intervene": "trace", "tiny-model": "trace"}


def _alone(argv: list[str]) -> str | None:
    """The module of a one-shot command named by `argv` (imported alone), or None."""
    return _ALONE.get(argv[0]) if argv else None


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


def openmp_waits(one_shot: bool) -> None:
    """How torch's OpenMP threads wait between parallel regions (libgomp, the runtime of torch's Linux wheels),
    set before any command imports torch (the pool reads it once); an explicit OMP_WAIT_POLICY or
    GOMP_SPINCOUNT wins.

    The row loop is thousands of short parallel regions (mid-sized matmuls, gathers). libgomp's default spins
    300,000 rounds before sleeping: on cores shared with anything else (a server's other threads, a second
    worker, CI) each region then waits for a descheduled spinner, and a 2,000-node trace took 6-17 s instead of
    6.5 s beside a test run. Services and long jobs sleep at once (PASSIVE). A one-shot command (`trace`) is
    usually the machine's only work, and there sleeping at once costs a wake-up per region. So it spins 3,000
    rounds first. `circuitboard trace` of Gemma at 9 tokens, 2 cores, medians (bench/README.md,
    2026-12-07 11:15 UTC): idle 3.37 s against PASSIVE's 3.68; beside one or two busy processes 5.9 / 6.8 s against
    PASSIVE's 5.1 / 5.9, where libgomp's default spin took 7.5-8.3 / 16-18 s."""
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    if one_shot:
        os.environ["GOMP_SPINCOUNT"] = "3000"
    else:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    alone = _alone(argv)
    openmp_waits(one_shot=alone is not None)
    parser = build_parser((alone,) if alone else _COMMAND_MODULES)
    args = parser.parse_args(argv)
    result = args.func(args)
    return int(result or 0)


def run() -> None:
    """The `circuitboard` program (console script, `python -m circuitboard`): `main` as a process of its own.

    A one-shot command (`trace`, `intervene`, `tiny-model`) spends its start-up creating objects that live until
    it exits: importing torch makes ~180k. The cyclic collector gains nothing from them and costs a lot: its
    collections during the imports took 0.2 s and the interpreter's collections at exit 0.4 s of a 3.5 s
    `circuitboard trace` (bench/README.md, 2026-12-07 11:15 UTC). So it is off until the command has loaded
    what it needs (`loaded`; `tiny-model`, a few seconds that load nothing, runs without it), then runs over
    what is made after that only, and at exit everything left is frozen (not collected again): memory goes
    back to the system as the process ends. Servers and workers keep the collector as Python sets it, as do
    callers of `main` inside a process of their own (tests)."""
    argv = sys.argv[1:]
    one_shot = _alone(argv) is not None
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
