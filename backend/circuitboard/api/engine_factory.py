"""How the server gets its Engine when none is injected: the preset's folders, or explicit paths."""

from __future__ import annotations

from typing import TYPE_CHECKING

from circuitboard.config import Settings
from circuitboard.jobs.host import EngineFactory

if TYPE_CHECKING:
    from circuitboard.engine.session import Engine


def resolve_paths(settings: Settings) -> tuple[str, str]:
    """(model, transcoders) from the overrides, else from the preset (made locally once if needed)."""
    if settings.model_path and settings.transcoders_path:
        return settings.model_path, settings.transcoders_path
    from circuitboard.presets import resolve_preset

    rp = resolve_preset(
        settings.preset,
        settings.models_dir,
        fetch=settings.model_path is None,
        need_transcoders=settings.transcoders_path is None,
    )
    return settings.model_path or str(rp.model_dir), settings.transcoders_path or str(rp.transcoders_dir)


def default_engine_factory(settings: Settings) -> EngineFactory:
    def load() -> Engine:
        from circuitboard.engine.session import Engine  # torch and transformers: only when a model loads

        model, transcoders = resolve_paths(settings)
        return Engine.load(model=model, transcoders=transcoders, device=settings.device, dtype=settings.dtype)

    return load
