"""The `circuitboard` command: help, trace (JSON + raw npz) and intervene on a tiny checkpoint."""

import json
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
