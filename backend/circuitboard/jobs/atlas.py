"""Atlas jobs (kind "atlas"): the feature atlas of a preset built on whatever host holds the preset's model (the
local worker thread, or a `circuitboard worker` of the preset in distributed mode), as `circuitboard atlas build`
builds it from the CLI. The API only queues the request; the worker reads the activation cache and writes the
atlas file where the API reads it (the shared `models` folder or volume).

Where a preset's atlas sources live: the overrides of the settings, else the preset's folder (presets.py); an
explicit transcoder folder keeps its activation cache and atlas beside it, as a preset folder does."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from circuitboard.config import Settings

Precision = Literal["auto", "bf16", "fp32"]
TokensProgress = Callable[[float, float, int], None]  # build_atlas's (tokens done, tokens total, layer)


class AtlasJob(BaseModel):
    """The request of an atlas job: the parameters of `circuitboard atlas build` that make sense remotely."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(default=None, ge=1, description="use at most this many cached tokens")
    layers: list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None, min_length=1, description="the layers to build (default: all); a resumed build keeps the others"
    )
    resume: bool = Field(default=True, description="false: rebuild every layer (user labels are kept)")
    precision: Precision = Field(default="auto", description="matmul dtype (auto: bf16 only where it is fast)")


class AtlasSummary(BaseModel):
    """The result of a done atlas job."""

    path: str = Field(description="the atlas file, as the worker sees it")
    features: int
    layers: int = Field(description="layers the atlas covers")
    layers_built: list[int] = Field(description="layers this job built (empty: the atlas was up to date)")
    tokens: int = Field(description="corpus tokens per layer")
    seconds: float


@dataclass(frozen=True)
class AtlasSources:
    model: Path
    transcoders: Path
    cache: Path  # the activation cache the atlas reads
    atlas: Path


def atlas_path(settings: Any) -> Path:
    """`atlas_path` when the settings name one, else beside `transcoders_path`, else models_dir/<preset>/.
    `settings`: a Settings, or an embedder's object with the same fields (atlas_path may be left out)."""
    explicit = getattr(settings, "atlas_path", None)
    if explicit:
        return Path(explicit)
    if settings.transcoders_path:
        return Path(settings.transcoders_path).parent / "atlas.sqlite"
    return Path(settings.models_dir) / settings.preset / "atlas.sqlite"


def atlas_sources(settings: Settings) -> AtlasSources:
    """The folders an atlas job of `settings`' preset reads and the file it writes; the preset is only read
    when an override is missing (nothing is fetched: the worker's engine already resolved the model)."""
    model = Path(settings.model_path) if settings.model_path else None
    transcoders = Path(settings.transcoders_path) if settings.transcoders_path else None
    cache = transcoders.parent / "activations" if transcoders is not None else None
    if model is None or transcoders is None:
        from circuitboard.presets import load_preset, preset_paths

        rp = preset_paths(load_preset(settings.preset, settings.models_dir), settings.models_dir)
        model = model or rp.model_dir
        transcoders = transcoders or rp.transcoders_dir
        cache = cache or rp.activations_dir
    assert cache is not None
    return AtlasSources(model, transcoders, cache, atlas_path(settings))


class AtlasBuilder:
    """Builds the atlas of one host's preset (the settings the host's engine was loaded from)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def build(self, job: AtlasJob, device: str, progress: TokensProgress) -> AtlasSummary:
        """Raises what build_atlas raises (FileNotFoundError without a cache, ValueError for layers the cache
        lacks), and whatever `progress` raises to stop it (layers already written stay: a resume keeps them)."""
        from circuitboard.atlas.build import build_atlas  # torch: only on the host that builds
        from circuitboard.atlas.params import AtlasParams

        src = atlas_sources(self.settings)
        if not src.transcoders.is_dir():
            raise FileNotFoundError(f"transcoders: no transcoder set at {src.transcoders}")
        t0 = time.perf_counter()
        res = build_atlas(
            src.model,
            src.transcoders,
            src.cache,
            src.atlas,
            max_tokens=job.max_tokens,
            progress=progress,
            resume=job.resume,
            params=AtlasParams(precision=job.precision),
            layers=job.layers,
            device=device,
        )
        return AtlasSummary(
            path=str(res.out_path),
            features=res.n_features,
            layers=res.n_layers,
            layers_built=res.layers_built,
            tokens=res.n_tokens,
            seconds=round(time.perf_counter() - t0, 3),
        )
