"""The compose files' structure: the lab stack (docker-compose.yml) and the one-container default
(docker-compose.single.yml). `docker compose config` needs a Docker install; these checks need none."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
APP_ROLES = ("migrate", "prepare", "api", "worker")


def _compose(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text())


def _gpu(service: dict[str, Any]) -> dict[str, Any]:
    return service["deploy"]["resources"]["reservations"]["devices"][0]


def _named_volumes(service: dict[str, Any]) -> dict[str, str]:
    return {v.split(":")[0]: v.split(":")[1] for v in service.get("volumes", [])}


def _depends(service: dict[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service.get("depends_on", {}).items()}


def test_lab_stack_services_and_wiring():
    compose = _compose("docker-compose.yml")
    services = compose["services"]
    assert set(services) == {"postgres", "redis", *APP_ROLES}
    for role in APP_ROLES:  # one image for every role, wired to the same store and queue
        env = services[role]["environment"]
        assert services[role]["image"] == "circuitboard:latest"
        assert env["CIRCUITBOARD_DATABASE_URL"].startswith("postgresql+psycopg://circuitboard:")
        assert env["CIRCUITBOARD_DATABASE_URL"].endswith("@postgres:5432/circuitboard")
        assert env["CIRCUITBOARD_QUEUE_URL"] == "redis://redis:6379/0"
        assert _named_volumes(services[role])["models"] == env["CIRCUITBOARD_MODELS_DIR"]
    assert services["migrate"]["command"] == ["circuitboard", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no" and services["prepare"]["restart"] == "no"
    assert _depends(services["migrate"]) == {"postgres": "service_healthy"}
    assert _depends(services["api"]) == {"migrate": "service_completed_successfully", "redis": "service_healthy"}
    assert _depends(services["worker"]) == {
        "migrate": "service_completed_successfully",
        "prepare": "service_completed_successfully",
        "redis": "service_healthy",
    }
    assert set(compose["volumes"]) == {"models", "pgdata", "redisdata"}


def test_api_is_published_on_loopback_and_has_a_healthcheck():
    api = _compose("docker-compose.yml")["services"]["api"]
    assert api["command"][:2] == ["circuitboard", "serve"]
    assert api["ports"] == ["${CIRCUITBOARD_PUBLISH:-127.0.0.1}:8000:8000"]
    assert api["environment"]["CIRCUITBOARD_PUBLIC_HOST"] == "${CIRCUITBOARD_PUBLISH:-127.0.0.1}"
    test = api["healthcheck"]["test"]
    assert test[0] == "CMD" and "http://127.0.0.1:8000/api/health" in test
    assert "deploy" not in api  # the API never loads a model: no GPU


def test_worker_is_scalable_with_a_gpu_reservation():
    services = _compose("docker-compose.yml")["services"]
    worker = services["worker"]
    assert worker["command"][:3] == ["circuitboard", "worker", "--preset"]
    device = _gpu(worker)
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert _gpu(services["prepare"]) == device
    # `--scale worker=N` needs no fixed name and no host port.
    assert "container_name" not in worker and "ports" not in worker
    published = [s for s in services.values() if "ports" in s]
    assert published == [services["api"]]  # Redis and PostgreSQL are reachable from the compose network only


def test_redis_and_postgres_are_official_images_with_volumes_and_healthchecks():
    services = _compose("docker-compose.yml")["services"]
    redis, postgres = services["redis"], services["postgres"]
    assert re.fullmatch(r"redis:\d+[\w.-]*", redis["image"]) and re.fullmatch(r"postgres:\d+[\w.-]*", postgres["image"])
    assert _named_volumes(redis) == {"redisdata": "/data"}
    assert _named_volumes(postgres) == {"pgdata": "/var/lib/postgresql/data"}
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"  # a restart keeps queued jobs
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert postgres["environment"]["POSTGRES_DB"] == "circuitboard"


def test_single_container_default_stays():
    compose = _compose("docker-compose.single.yml")
    app = compose["services"]["app"]
    assert set(compose["services"]) == {"app"}
    assert app["ports"] == ["${CIRCUITBOARD_PUBLISH:-127.0.0.1}:8000:8000"]
    volumes = _named_volumes(app)
    assert set(volumes) == {"models", "db"} == set(compose["volumes"])
    assert app["environment"]["CIRCUITBOARD_DATABASE_URL"] == f"sqlite:///{volumes['db']}/circuitboard.sqlite"
    assert "CIRCUITBOARD_QUEUE_URL" not in app["environment"]
    assert _gpu(app)["driver"] == "nvidia"
    assert "http://127.0.0.1:8000/api/health" in app["healthcheck"]["test"]


def test_dockerfile_installs_as_the_makefile_does():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "bash scripts/install-python.sh" in dockerfile
    assert "bash scripts/install-python.sh" in (ROOT / "Makefile").read_text()
    assert "EXPOSE 8000" in dockerfile and "curl" in dockerfile  # the healthchecks run curl inside the image


def _compose_cli() -> list[str] | None:
    """Docker's compose plugin (v2), else Debian's docker-compose (v1), else None."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.single.yml"])
def test_compose_config_validates(name):
    """With a compose CLI on the machine (v2 plugin or Debian's docker-compose), it accepts the file."""
    cmd = _compose_cli()
    if cmd is None:
        pytest.skip("no docker compose CLI here")
    cmd += ["-f", name, "config", "-q"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
