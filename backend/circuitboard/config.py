"""Settings: paths, limits and the operator's changes to parameter ranges.

Every limit the service enforces is read from here (the attribution parameters' ranges are declared with the
parameters in circuitboard.engine.types and changed through `Settings.params`); `GET /api/config` serves the
result to the page so the form's ranges and the server's checks never drift apart (Neuronpedia's did).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from circuitboard.ranges import RangeOverrides

# The repository root when running from a checkout (backend/circuitboard/config.py -> ../../..).
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODELS_DIR = REPO_ROOT / "models"
DEFAULT_PRESET = "gemma-3-270m"


class InterventionLimits(BaseModel):
    """Bounds of an intervention request (each one costs a generation on the worker's model)."""

    max_interventions: int = 64
    max_new_tokens: int = 64
    max_top_k: int = 20
    max_watch: int = 20  # watched tokens per request
    # temperature is 0 (greedy) or in [min_temperature, max_temperature]: below that the softmax overflows
    min_temperature: float = 0.05
    max_temperature: float = 2.0
    max_abs_value: float = 1e6


class RateLimits(BaseModel):
    """Requests per client and window, in the `limits` library's notation ("30/minute", "5 per second"); a
    signed-in user is counted by name, and every client also by address at `per_ip_factor` times the rate.
    CIRCUITBOARD_RATE_LIMITS__TRACES=10/minute."""

    model_config = ConfigDict(extra="forbid")

    traces: str = "30/minute"
    interventions: str = "240/minute"
    tokenize: str = "600/minute"
    imports: str = "30/minute"
    explain: str = "20/minute"
    per_ip_factor: int = Field(default=4, ge=1)


def default_trace_bytes(share: float = 0.5) -> int:
    """Half of this machine's RAM: the model, the page and other requests need the rest."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a 16 GiB machine
        total = 16 * 2**30
    return int(total * share)


AuthMode = Literal["auto", "required", "off"]
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CIRCUITBOARD_",
        env_nested_delimiter="__",
        extra="ignore",
        populate_by_name=True,
    )

    # --- paths -----------------------------------------------------------------------------------------
    data_dir: Path = Path("data")
    models_dir: Path = DEFAULT_MODELS_DIR
    # SQLAlchemy URL; DATABASE_URL (the usual name on hosts such as Heroku/Render) is accepted too.
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CIRCUITBOARD_DATABASE_URL", "DATABASE_URL", "database_url"),
    )
    frontend_dist: Path = REPO_ROOT / "frontend" / "dist"
    atlas_path: Path | None = None  # the feature atlas; default: beside the transcoders / in the preset folder

    # --- model -----------------------------------------------------------------------------------------
    preset: str = DEFAULT_PRESET
    model_path: str | None = None  # overrides the preset's model
    transcoders_path: str | None = None  # overrides the preset's transcoder set
    device: str | None = None  # None: cuda when available, else cpu
    dtype: str = "float32"
    load_engine: bool = True  # False: browse/import/export only (serve --no-engine)

    # --- server ----------------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # "auto": accounts are required exactly when the server is reachable on a non-loopback address
    auth: AuthMode = "auto"
    # The address clients reach the server at, when it is not the bind address (a container binds 0.0.0.0 and
    # is published on 127.0.0.1 or a LAN address): it decides "auto" and is an allowed host.
    public_host: str | None = None
    # Host headers served (DNS rebinding): default the loopback names, plus `host` when it names one address.
    # CIRCUITBOARD_ALLOWED_HOSTS=circuits.lab.example,10.0.0.5 ("*" allows any).
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- limits ----------------------------------------------------------------------------------------
    max_prompt_tokens: int = Field(default=256, ge=1)
    # A trace whose estimate (circuitboard.engine.estimate) passes either limit is refused before it is queued.
    max_trace_seconds: float = Field(default=15 * 60, gt=0)
    max_trace_bytes: int = Field(default_factory=lambda: default_trace_bytes(), ge=1)
    max_prompt_chars: int = Field(default=10_000, ge=1)
    max_queue: int = Field(default=8, ge=1)  # queued + running jobs
    max_queue_per_user: int = Field(default=3, ge=1)  # of them, one signed-in user's (shared mode)
    max_pending_interventions: int = Field(default=16, ge=1)  # waiting for the model; more are refused at once
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    # An import's size in what memory grows with (a 1e6-link file takes ~1.2 GB once parsed)
    max_import_nodes: int = Field(default=50_000, ge=1)
    max_import_links: int = Field(default=500_000, ge=1)
    max_saved_views: int = Field(default=200, ge=1)  # per graph
    max_target_tokens: int = Field(default=10, ge=1)
    batch_size: int = Field(default=64, ge=1)
    # How long a request waits for the model while the worker holds it (interventions, token preview).
    engine_wait_s: float = Field(default=30.0, ge=0)
    preview_wait_s: float = Field(default=2.0, ge=0)
    # A job that was running when the server died is re-queued this many times, then marked failed.
    max_job_attempts: int = Field(default=2, ge=1)

    # --- distributed mode (docs/architecture.md "Distributed mode") -----------------------------------------
    # redis://host:6379/0: the API enqueues jobs for `circuitboard worker` processes and loads no model.
    queue_url: str | None = None
    worker_heartbeat_s: float = Field(default=2.0, gt=0)  # a worker's "alive" key lives 3 beats
    # Dramatiq's Redis broker: a worker silent this long is dead, and its unacknowledged job is redelivered by
    # the queue maintenance, which runs on this many of a million broker commands.
    queue_heartbeat_timeout_ms: int = Field(default=15_000, ge=100)
    queue_maintenance_chance: int = Field(default=100_000, ge=1, le=1_000_000)
    queue_poll_ms: int = Field(default=100, ge=10)  # an idle worker looks for messages at least this often
    # A job still queued this long while a worker of its preset idles has lost its message: it is sent again.
    queue_lost_after_s: float = Field(default=10.0, gt=0)

    params: RangeOverrides = RangeOverrides()
    interventions: InterventionLimits = InterventionLimits()
    rate_limits: RateLimits = RateLimits()

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _hosts(cls, v: object) -> object:
        return [h.strip() for h in v.split(",") if h.strip()] if isinstance(v, str) else v

    @property
    def reachable_host(self) -> str:
        return self.public_host or self.host

    @property
    def auth_required(self) -> bool:
        return self.auth == "required" or (self.auth == "auto" and not is_loopback(self.reachable_host))

    @property
    def trusted_hosts(self) -> list[str]:
        if self.allowed_hosts:
            return list(self.allowed_hosts)
        host = self.reachable_host
        named = host not in ("0.0.0.0", "::", "") and not is_loopback(host)
        return [*_LOOPBACK_NAMES, "[::1]", *([host] if named else [])]

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'circuitboard.sqlite').resolve()}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
