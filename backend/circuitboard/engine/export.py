"""Graph JSON in circuit-tracer's `create_graph_files` schema: `{metadata, qParams, nodes, links}`.

Node ids (DESIGN.md): feature `{layer}_{index}_{pos}`, error `{layer}_-1_{pos}`, embedding `E_{token}_{pos}`,
logit `{n_layers+1}_{token}_{pos}`. Import also accepts the older error id `0_{layer}_{pos}`.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from circuitboard.engine.graph import Graph, PruneResult

SCHEMA_VERSION = 1
FEATURE_TYPES = {"cross layer transcoder", "mlp reconstruction error", "embedding", "logit"}


def cantor(x: int, y: int) -> int:
    return (x + y) * (x + y + 1) // 2 + y


def graph_to_json(
    graph: Graph, prune: PruneResult, *, slug: str, scan: str, node_threshold: float, info: dict | None = None
) -> dict[str, Any]:
    ids = graph.node_ids()
    L, P = graph.n_layers, graph.n_pos
    n_feat = graph.n_features
    kept = prune.node_mask.nonzero(as_tuple=True)[0].tolist()
    sel = graph.active_features[graph.selected_features].tolist()
    acts = graph.activation_values[graph.selected_features].tolist()
    top_logit = 0
    nodes = []
    for i in kept:
        influence = float(prune.cumulative_scores[i])
        if i < n_feat:
            layer, pos, feat = sel[i]
            nodes.append(
                _node(
                    ids[i],
                    cantor(layer, feat),
                    str(layer),
                    pos,
                    "cross layer transcoder",
                    influence,
                    activation=acts[i],
                    js=f"{layer}_{feat}-0",
                )
            )
        elif i < graph.token_slice.start:
            layer, pos = divmod(i - n_feat, P)
            nodes.append(
                _node(ids[i], -1, str(layer), pos, "mlp reconstruction error", influence, js=f"{layer}_-1-{pos}")
            )
        elif i < graph.logit_slice.start:
            pos = i - graph.token_slice.start
            tok = int(graph.input_tokens[pos])
            nodes.append(_node(ids[i], pos, "E", pos, "embedding", influence, js=f"E_{tok}-{pos}"))
        else:
            k = i - graph.logit_slice.start
            tok, prob = graph.logit_tokens[k], float(graph.logit_probabilities[k])
            nodes.append(
                _node(
                    ids[i],
                    tok,
                    str(L + 1),
                    P - 1,
                    "logit",
                    influence,
                    js=f"L_{tok}-{P - 1}",
                    token_prob=prob,
                    is_target_logit=k == top_logit,
                    clerp=f'Output "{graph.logit_strings[k]}" (p={prob:.3f})',
                )
            )
    targets, sources = prune.edge_mask.nonzero(as_tuple=True)
    weights = graph.adjacency_matrix[targets, sources].tolist()
    links = [
        {"source": ids[s], "target": ids[t], "weight": w}
        for t, s, w in zip(targets.tolist(), sources.tolist(), weights, strict=True)
    ]
    metadata = {
        "slug": slug,
        "scan": scan,
        "transcoder_list": [],
        "prompt_tokens": graph.token_strings,
        "prompt": graph.input_string,
        "node_threshold": node_threshold,
        "schema_version": SCHEMA_VERSION,
        "info": {**graph.info, **(info or {})},
    }
    q_params = {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""}
    return {"metadata": metadata, "qParams": q_params, "nodes": nodes, "links": links}


def _node(
    node_id,
    feature,
    layer,
    pos,
    ftype,
    influence,
    *,
    activation=None,
    js="",
    token_prob=0.0,
    is_target_logit=False,
    clerp="",
):
    return {
        "node_id": node_id,
        "feature": feature,
        "layer": layer,
        "ctx_idx": pos,
        "feature_type": ftype,
        "token_prob": token_prob,
        "is_target_logit": is_target_logit,
        "run_idx": 0,
        "reverse_ctx_idx": 0,
        "jsNodeId": js,
        "clerp": clerp,
        "influence": influence,
        "activation": activation,
    }


# ------------------------------------------------------------------------------------------------ import


class NodeIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    node_id: str = Field(min_length=1, max_length=200)
    feature: int | None = None
    layer: str | int
    ctx_idx: int = Field(ge=0)
    feature_type: str
    token_prob: float | None = 0.0
    is_target_logit: bool | None = False
    jsNodeId: str | None = ""
    clerp: str | None = ""
    influence: float | None = None
    activation: float | None = None


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    source: str
    target: str
    weight: float


class MetadataIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    slug: str = ""
    scan: str | None = None
    prompt_tokens: list[str] = Field(default_factory=list)
    prompt: str = ""
    node_threshold: float | None = None
    schema_version: int | None = None


class GraphIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    metadata: MetadataIn
    qParams: dict = Field(default_factory=dict)
    nodes: list[NodeIn]
    links: list[LinkIn]


class GraphFormatError(ValueError):
    """A graph JSON that does not fit the schema; the message names the offending field."""


_OLD_ERROR = re.compile(r"^0_(\d+)_(\d+)$")


def graph_from_json(data: Any) -> dict[str, Any]:
    """Validate a circuit-tracer / Neuronpedia graph JSON and normalise it to our id scheme."""
    try:
        graph = GraphIn.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise GraphFormatError(f"{field}: {err['msg']}") from None
    rename = {}
    for i, node in enumerate(graph.nodes):
        if node.feature_type not in FEATURE_TYPES:
            raise GraphFormatError(f"nodes.{i}.feature_type: unknown type {node.feature_type!r}")
        if node.feature_type == "mlp reconstruction error":
            m = _OLD_ERROR.match(node.node_id)
            if m and str(node.layer) == m.group(1):
                new = f"{m.group(1)}_-1_{m.group(2)}"
                rename[node.node_id] = new
                node.node_id = new
    ids = {n.node_id for n in graph.nodes}
    if len(ids) != len(graph.nodes):
        raise GraphFormatError("nodes: duplicate node_id")
    for i, link in enumerate(graph.links):
        link.source = rename.get(link.source, link.source)
        link.target = rename.get(link.target, link.target)
        if link.source not in ids or link.target not in ids:
            raise GraphFormatError(f"links.{i}: refers to a node that is not in nodes")
    out = graph.model_dump(mode="json")
    for node in out["nodes"]:
        node["layer"] = str(node["layer"])
    return out
