"""Checks of request values against the limits in Settings (what GET /api/config serves)."""

from __future__ import annotations

from collections.abc import Mapping

from circuitboard.api.errors import field_error
from circuitboard.api.schemas import GraphCreate, InterventionIn
from circuitboard.config import InterventionLimits, Settings
from circuitboard.engine.types import EngineInfo, FeatureIntervention, OutOfRange
from circuitboard.jobs import GraphRequest
from circuitboard.ranges import ParamRange
from circuitboard.store.slugs import is_valid_slug


def check_prompt(prompt: str, settings: Settings) -> None:
    if not prompt.strip():
        raise field_error(("body", "prompt"), "prompt: must not be blank", prompt)
    if len(prompt) > settings.max_prompt_chars:
        raise field_error(
            ("body", "prompt"),
            f"prompt: {len(prompt)} characters, more than the limit of {settings.max_prompt_chars}",
            len(prompt),
        )


def graph_request(body: GraphCreate, settings: Settings, ranges: Mapping[str, ParamRange]) -> GraphRequest:
    """The job's request: the body's choices, the ranges' defaults for the rest, the host's batch size."""
    check_prompt(body.prompt, settings)
    targets = _targets(body.target_tokens, settings.max_target_tokens)
    features = _target_features(body, settings.max_target_tokens)
    if body.slug is not None and not is_valid_slug(body.slug):
        raise field_error(
            ("body", "slug"),
            "slug: use 1-80 lowercase letters, digits, '-' or '_', starting with a letter or digit",
            body.slug,
        )
    chosen = {name: getattr(body, name) for name in ranges}
    req = GraphRequest.model_validate(
        {
            "prompt": body.prompt,
            "batch_size": settings.batch_size,
            "target_tokens": targets,
            "target_features": features,
            "slug": body.slug,
            **{name: rng.default if chosen[name] is None else chosen[name] for name, rng in ranges.items()},
        }
    )
    try:
        req.check(ranges)
    except OutOfRange as e:
        raise field_error(("body", e.name), str(e), e.value) from None
    return req


def _target_features(body: GraphCreate, limit: int) -> list[tuple[int, int, int]] | None:
    """Feature targets: at most `limit`, not mixed with token targets (whether each exists is the engine's to say)."""
    features = body.target_features or None
    if features is None:
        return None
    if body.target_tokens:
        raise field_error(
            ("body", "target_features"), "target_features: give target features or target tokens, not both"
        )
    if len(features) > limit:
        raise field_error(
            ("body", "target_features"),
            f"target_features: at most {limit} features (got {len(features)})",
            len(features),
        )
    return [(int(a), int(b), int(c)) for a, b, c in features]


def _targets(targets: list[str] | None, limit: int) -> list[str] | None:
    check_token_list(targets or [], "target_tokens", limit)
    return targets or None


def check_token_list(texts: list[str], field: str, limit: int) -> None:
    """At most `limit` token strings, none empty (whether each is one token is the tokenizer's to say)."""
    if len(texts) > limit:
        raise field_error(("body", field), f"{field}: at most {limit} tokens (got {len(texts)})", len(texts))
    for i, t in enumerate(texts):
        if not t:
            raise field_error(("body", field, i), f"{field}: empty token", t)


def check_intervention(body: InterventionIn, settings: Settings, info: EngineInfo | None) -> None:
    """Bounds from settings, and layer/feature indices against the loaded model when there is one."""
    check_prompt(body.prompt, settings)
    lim = settings.interventions
    if len(body.interventions) > lim.max_interventions:
        raise field_error(("body", "interventions"), f"interventions: at most {lim.max_interventions}")
    if body.n_tokens > lim.max_new_tokens:
        raise field_error(("body", "n_tokens"), f"n_tokens: at most {lim.max_new_tokens}", body.n_tokens)
    if body.top_k > lim.max_top_k:
        raise field_error(("body", "top_k"), f"top_k: at most {lim.max_top_k}", body.top_k)
    _check_temperature(body.temperature, lim)
    check_token_list(body.watch, "watch", lim.max_watch)
    for i, iv in enumerate(body.interventions):
        _check_item(i, iv, lim, info)


def _check_temperature(t: float, lim: InterventionLimits) -> None:
    if t != 0 and not lim.min_temperature <= t <= lim.max_temperature:
        raise field_error(
            ("body", "temperature"),
            f"temperature: 0 (greedy) or between {lim.min_temperature} and {lim.max_temperature} (got {t})",
            t,
        )


def _check_item(i: int, iv: FeatureIntervention, lim: InterventionLimits, info: EngineInfo | None) -> None:
    loc = ("body", "interventions", i)
    if info is not None and iv.layer >= info.n_layers:
        raise field_error((*loc, "layer"), f"interventions[{i}].layer: the model has {info.n_layers} layers", iv.layer)
    if info is not None and iv.feature >= info.d_transcoder:
        raise field_error(
            (*loc, "feature"),
            f"interventions[{i}].feature: the transcoders have {info.d_transcoder} features",
            iv.feature,
        )
    if abs(iv.value) > lim.max_abs_value:
        raise field_error((*loc, "value"), f"interventions[{i}].value: |value| at most {lim.max_abs_value}")


def check_positions(body: InterventionIn, n_tokens: int) -> None:
    """Every intervention's position lies in the prompt (`n_tokens` tokens)."""
    for i, iv in enumerate(body.interventions):
        if iv.position is not None and iv.position >= n_tokens:
            raise field_error(
                ("body", "interventions", i, "position"),
                f"interventions.{i}.position: the prompt has {n_tokens} tokens (positions 0-{n_tokens - 1})",
                iv.position,
            )
