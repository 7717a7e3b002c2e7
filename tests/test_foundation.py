"""Foundation: the CLI, the health endpoint over a real uvicorn, the compose file and the CI entry point."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_cli_help_and_version():
    out = subprocess.run([sys.executable, "-m", "circuitboard", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("serve", "trace", "intervene", "prepare", "train-transcoders", "corpus", "atlas"):
        assert cmd in out.stdout, cmd
    ver = subprocess.run([sys.executable, "-m", "circuitboard", "--version"], capture_output=True, text=True)
    assert ver.stdout.startswith("circuitboard ")
    bad = subprocess.run([sys.executable, "-m", "circuitboard", "no-such-command"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_health_over_real_uvicorn(tmp_path):
    port = _free_port()
    env = {**os.environ, "CIRCUITBOARD_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "circuitboard", "serve", "127.0.0.1", str(port), "--no-engine"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.time() < deadline, "server did not start"
                time.sleep(0.3)
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "ok" and body["device"] in ("cpu", "cuda")
        assert body["version"] == "0.1.0" and body["engine"] == "none"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_compose_file_structure():
    compose = yaml.safe_load((ROOT / "docker-compose.single.yml").read_text())
    app = compose["services"]["app"]
    assert app["ports"] == ["${CIRCUITBOARD_PUBLISH:-127.0.0.1}:8000:8000"]  # loopback unless the operator says
    volumes = {v.split(":")[0]: v.split(":")[1] for v in app["volumes"]}
    assert set(volumes) == {"models", "db"} and set(compose["volumes"]) == {"models", "db"}
    assert app["environment"]["CIRCUITBOARD_MODELS_DIR"] == volumes["models"]
    assert volumes["db"] in app["environment"]["CIRCUITBOARD_DATABASE_URL"]
    device = app["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    test = app["healthcheck"]["test"]
    assert test[0] == "CMD" and "http://127.0.0.1:8000/api/health" in test
    dockerfile = (ROOT / "Dockerfile").read_text()
    # The image installs exactly as the Makefile does.
    assert "scripts/install-python.sh" in dockerfile and "scripts/install-python.sh" in (ROOT / "Makefile").read_text()
    assert "EXPOSE 8000" in dockerfile


def test_ci_entry_runs_make_test():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "CI=true" in ci
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
