"""Settings: paths, limits and the operator's changes to parameter ranges.

Every limit the service enforces is read from here (the attribution parameters' ranges are declared with the
parameters in circuitboard.engine.types and changed through `Settings.params`); `GET /api/config` serves the
result to the page so the form's ranges and the server's checks never drift apart (Neuronpedia's did).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The repository root when running from a checkout (backend/circuitboard/config.py -> ../../..).
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODELS_DIR = REPO_ROOT / "models"
DEFAULT_PRESET = "gemma-3-270m"


class ParamRange(BaseModel):
    """Inclusive range and default of one numeric attribution parameter."""

    min: float
    max: float
    default: float

    @model_validator(mode="after")
    def _default_in_range(self) -> ParamRange:
        if not (self.min <= self.default <= self.max):
            raise ValueError(f"default {self.default} outside [{self.min}, {self.max}]")
        return self


class IntRange(ParamRange):
    min: int
    max: int
    default: int


class RangeOverride(BaseModel):
    """An operator's change to one parameter's range; unset bounds keep the declared ones."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = None
    max: float | None = None
    default: float | None = None


class RangeOverrides(BaseModel):
    """Changes to the ranges of the attribution parameters, by parameter name
    (CIRCUITBOARD_PARAMS__MAX_N_LOGITS__MAX=30). The ranges themselves are declared with the parameters
    (circuitboard.engine.types.AttributionParams); `param_ranges` there merges these changes in. This module
    sits below the engine, so it holds only the changes, not the names."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, RangeOverride] = Field(init=False)


class InterventionLimits(BaseModel):
    """Bounds of an intervention request (each one costs a generation on the worker's model)."""

    max_interventions: int = 64
    max_new_tokens: int = 64
    max_top_k: int = 20
    max_temperature: float = 2.0
    max_abs_value: float = 1e6


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

    # --- limits ----------------------------------------------------------------------------------------
    max_prompt_tokens: int = Field(default=64, ge=1)
    max_prompt_chars: int = Field(default=10_000, ge=1)
    max_queue: int = Field(default=8, ge=1)  # queued + running jobs
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    max_target_tokens: int = Field(default=10, ge=1)
    batch_size: int = Field(default=64, ge=1)
    # How long a request waits for the model while the worker holds it (interventions, token preview).
    engine_wait_s: float = Field(default=30.0, ge=0)
    preview_wait_s: float = Field(default=2.0, ge=0)
    # A job that was running when the server died is re-queued this many times, then marked failed.
    max_job_attempts: int = Field(default=2, ge=1)

    params: RangeOverrides = RangeOverrides()
    interventions: InterventionLimits = InterventionLimits()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'circuitboard.sqlite').resolve()}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
