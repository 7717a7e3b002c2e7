"""Our validated requests -> the engine's pydantic types (circuitboard.engine.types), in one place so a
change in the engine contract is a change here only."""

from __future__ import annotations

from typing import Any

from circuitboard.engine.types import AttributionParams, InterventionRequest
from circuitboard.jobs.models import GraphRequest


def attribution_params(req: GraphRequest) -> AttributionParams:
    return AttributionParams(
        max_n_logits=req.max_n_logits,
        desired_logit_prob=req.desired_logit_prob,
        max_feature_nodes=req.max_feature_nodes,
        batch_size=req.batch_size,
        node_threshold=req.node_threshold,
        edge_threshold=req.edge_threshold,
        target_tokens=req.target_tokens,
        slug=req.slug,
    )


def intervention_request(data: dict[str, Any]) -> InterventionRequest:
    return InterventionRequest.model_validate(data)
