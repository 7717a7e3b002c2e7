"""The range of a numeric attribution parameter, and an operator's changes to it.

The ranges themselves are declared with the parameters (circuitboard.engine.types.AttributionParams); the
operator changes them through the settings (circuitboard.config, `Settings.params`). These shapes live apart
from both so that the engine and the CLI use them without importing the server's settings and pydantic-settings
(importing `circuitboard.cli.trace` went from 107 to 89 ms, bench/README.md 2026-12-07 11:15 UTC).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
