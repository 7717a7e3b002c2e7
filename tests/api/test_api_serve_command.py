"""`circuitboard serve` as a user runs it: a subprocess, its URL on stdout, --no-engine."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import httpx
from cbapi_support import free_port

from circuitboard.cli.serve import register, settings_from_args


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_serve_arguments():
    s = settings_from_args(_parse(["serve"]))
    assert (s.host, s.port, s.preset, s.load_engine) == ("127.0.0.1", 8000, "gemma-3-270m", True)
    assert s.url == "http://127.0.0.1:8000"
    s = settings_from_args(
        _parse(
            [
                "serve",
                "0.0.0.0",
                "9000",
                "--preset",
                "llama-3.2-1b",
                "--model",
                "/m",
                "--transcoders",
                "/t",
                "--no-engine",
            ]
        )
    )
    assert (s.host, s.port, s.preset, s.model_path, s.transcoders_path, s.load_engine) == (
        "0.0.0.0",
        9000,
        "llama-3.2-1b",
        "/m",
        "/t",
        False,
    )


def test_serve_subprocess_no_engine(tmp_path):
    port = free_port()
    env = {**os.environ, "CIRCUITBOARD_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.sqlite'}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "circuitboard", "serve", "127.0.0.1", str(port), "--no-engine"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        first = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in first
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health").json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        assert health["engine"] == "none"
        r = httpx.post(f"http://127.0.0.1:{port}/api/graphs", json={"prompt": "hello"})
        assert r.status_code == 503 and "--no-engine" in r.json()["detail"]
        assert httpx.get(f"http://127.0.0.1:{port}/api/graphs").json()["total"] == 0
        assert httpx.get(f"http://127.0.0.1:{port}/trace").status_code == 200
    finally:
        proc.terminate()
        proc.wait(15)
