"""The `circuitboard` command: help, trace (JSON + raw npz) and intervene on a tiny checkpoint."""

import gc
import json
import os
import subprocess
import sys

import numpy as np
import pytest


def _run(*args, check=True):
    return subprocess.run(
        [sys.executable, "-m", "circuitboard", *args], capture_output=True, text=True, check=check, timeout=300
    )


def test_help_lists_subcommands():
    out = _run("--help").stdout
    for cmd in ("trace", "intervene", "tiny-model"):
        assert cmd in out
    assert "--max-feature-nodes" in _run("trace", "--help").stdout


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    _run("tiny-model", str(root), "--arch", "gemma2", "--kind", "jumprelu", "--skip")
    return root


def test_trace_writes_graph_and_raw(tiny, tmp_path):
    out, raw = tmp_path / "g.json", tmp_path / "g.npz"
    res = _run(
        "trace",
        "The opposite of hot is",
        "--model",
        str(tiny / "model"),
        "--transcoders",
        str(tiny / "transcoders"),
        "--max-feature-nodes",
        "25",
        "--batch-size",
        "8",
        "--out",
        str(out),
        "--raw",
        str(raw),
    )
    assert "features" in res.stderr  # progress bar phases on stderr
    graph = json.loads(out.read_text())
    assert graph["metadata"]["prompt"] == "The opposite of hot is"
    npz = np.load(raw)
    n = len(npz["node_ids"])
    assert npz["adjacency"].shape == (n, n)
    assert set(graph["metadata"]["info"]["input_token_ids"]) >= {1}


def test_intervene_prints_before_and_after(tiny):
    res = _run(
        "intervene",
        "The opposite of hot is",
        "--model",
        str(tiny / "model"),
        "--transcoders",
        str(tiny / "transcoders"),
        "--feature",
        "1:3=40",
        "--n-tokens",
        "3",
    )
    assert "before:" in res.stdout and "after:" in res.stdout
    bad = _run(
        "intervene",
        "x",
        "--model",
        str(tiny / "model"),
        "--transcoders",
        str(tiny / "transcoders"),
        "--feature",
        "nonsense",
        check=False,
    )
    assert bad.returncode != 0 and "--feature" in bad.stderr


_COLLECTOR_PROBE = """
import atexit, gc, sys
from circuitboard import cli
from circuitboard.engine.session import Engine

seen = {}
load, attribute = Engine.load.__func__, Engine.attribute_graph

def probe_load(cls, *a, **k):
    seen["loading"] = gc.isenabled()
    return load(cls, *a, **k)

def probe_attribute(self, *a, **k):
    seen["tracing"] = gc.isenabled()
    return attribute(self, *a, **k)

Engine.load, Engine.attribute_graph = classmethod(probe_load), probe_attribute
atexit.register(lambda: print("PROBE", seen["loading"], seen["tracing"], gc.get_freeze_count() > 0))
sys.argv = ["circuitboard", *sys.argv[1:]]
cli.run()
"""


def test_one_shot_trace_pauses_the_collector_only_while_loading(tiny, tmp_path):
    """`circuitboard trace` as a program (cli.run): no cyclic collections during start-up, the collector on again
    for the trace itself (what it makes is collected as usual), and what is left frozen at exit."""
    args = ["trace", "The opposite of hot is", "--model", str(tiny / "model")]
    args += ["--transcoders", str(tiny / "transcoders"), "--max-feature-nodes", "10", "--out", str(tmp_path / "g.json")]
    res = subprocess.run(
        [sys.executable, "-c", _COLLECTOR_PROBE, *args], capture_output=True, text=True, check=True, timeout=300
    )
    assert "PROBE False True True" in res.stdout, res.stdout + res.stderr
    assert json.loads((tmp_path / "g.json").read_text())["metadata"]["prompt"] == "The opposite of hot is"


def test_main_inside_a_process_leaves_the_collector_alone(tiny, tmp_path, monkeypatch):
    """Callers of `main` in a process of their own (tests, scripts) keep the collector as they have it."""
    from circuitboard.cli import main

    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):  # what `main` sets stays out of later tests' processes
        monkeypatch.delenv(name, raising=False)
    before = gc.get_freeze_count()
    args = ["trace", "hot", "--model", str(tiny / "model"), "--transcoders", str(tiny / "transcoders")]
    assert main([*args, "--max-feature-nodes", "5", "--out", str(tmp_path / "g.json")]) == 0
    assert gc.isenabled() and gc.get_freeze_count() == before


@pytest.mark.parametrize(
    ("one_shot", "given", "expected"),
    [
        (True, {}, {"GOMP_SPINCOUNT": "3000"}),
        (False, {}, {"OMP_WAIT_POLICY": "PASSIVE"}),
        (True, {"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": "ACTIVE"}),
        (False, {"GOMP_SPINCOUNT": "10"}, {"GOMP_SPINCOUNT": "10"}),
    ],
)
def test_openmp_waits_brief_spin_for_one_shot_commands_sleep_for_services(monkeypatch, one_shot, given, expected):
    """A one-shot command spins briefly, services sleep at once, and an explicit setting wins."""
    from circuitboard.cli import openmp_waits

    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    openmp_waits(one_shot=one_shot)
    assert {n: os.environ[n] for n in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if n in os.environ} == expected
