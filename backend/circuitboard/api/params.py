"""Checks of request values against the ranges in Settings (the ones GET /api/config serves)."""

from __future__ import annotations

from circuitboard.api.errors import field_error
from circuitboard.api.schemas import GraphCreate, InterventionIn
from circuitboard.config import ParamRange, Settings
from circuitboard.jobs import GraphRequest
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


def _ranged(name: str, value: float | None, rng: ParamRange) -> float:
    if value is None:
        return rng.default
    if not (rng.min <= value <= rng.max):
        raise field_error(("body", name), f"{name}: must be between {rng.min} and {rng.max} (got {value})", value)
    return value


def graph_request(body: GraphCreate, settings: Settings) -> GraphRequest:
    check_prompt(body.prompt, settings)
    p = settings.params
    targets = body.target_tokens
    if targets is not None:
        if len(targets) > settings.max_target_tokens:
            raise field_error(
                ("body", "target_tokens"),
                f"target_tokens: at most {settings.max_target_tokens} tokens (got {len(targets)})",
                len(targets),
            )
        for i, t in enumerate(targets):
            if not t:
                raise field_error(("body", "target_tokens", i), "target_tokens: empty token", t)
        targets = targets or None
    if body.slug is not None and not is_valid_slug(body.slug):
        raise field_error(
            ("body", "slug"),
            "slug: use 1-80 lowercase letters, digits, '-' or '_', starting with a letter or digit",
            body.slug,
        )
    return GraphRequest(
        prompt=body.prompt,
        max_n_logits=int(_ranged("max_n_logits", body.max_n_logits, p.max_n_logits)),
        desired_logit_prob=_ranged("desired_logit_prob", body.desired_logit_prob, p.desired_logit_prob),
        max_feature_nodes=int(_ranged("max_feature_nodes", body.max_feature_nodes, p.max_feature_nodes)),
        node_threshold=_ranged("node_threshold", body.node_threshold, p.node_threshold),
        edge_threshold=_ranged("edge_threshold", body.edge_threshold, p.edge_threshold),
        batch_size=settings.batch_size,
        target_tokens=targets,
        slug=body.slug,
    )


def check_intervention(body: InterventionIn, settings: Settings, info: object | None) -> None:
    """Bounds from settings, and layer/feature indices against the loaded model when there is one."""
    check_prompt(body.prompt, settings)
    lim = settings.interventions
    if len(body.interventions) > lim.max_interventions:
        raise field_error(("body", "interventions"), f"interventions: at most {lim.max_interventions}")
    if body.n_tokens > lim.max_new_tokens:
        raise field_error(("body", "n_tokens"), f"n_tokens: at most {lim.max_new_tokens}", body.n_tokens)
    if body.top_k > lim.max_top_k:
        raise field_error(("body", "top_k"), f"top_k: at most {lim.max_top_k}", body.top_k)
    if body.temperature > lim.max_temperature:
        raise field_error(("body", "temperature"), f"temperature: at most {lim.max_temperature}", body.temperature)
    n_layers = getattr(info, "n_layers", None)
    d_t = getattr(info, "d_transcoder", None)
    for i, iv in enumerate(body.interventions):
        loc = ("body", "interventions", i)
        if n_layers is not None and iv.layer >= n_layers:
            raise field_error((*loc, "layer"), f"interventions[{i}].layer: the model has {n_layers} layers", iv.layer)
        if d_t is not None and iv.feature >= d_t:
            raise field_error(
                (*loc, "feature"), f"interventions[{i}].feature: the transcoders have {d_t} features", iv.feature
            )
        if abs(iv.value) > lim.max_abs_value:
            raise field_error((*loc, "value"), f"interventions[{i}].value: |value| at most {lim.max_abs_value}")
