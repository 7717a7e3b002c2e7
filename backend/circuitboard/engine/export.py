"""Graph JSON, both directions: circuit-tracer's `create_graph_files` schema `{metadata, qParams, nodes, links}`.

The one home of the node id scheme, the `cantor` feature ids, the export of a pruned Graph and the validation
of a graph file someone uploads (the import route) — both directions share the models below.

Node ids (DESIGN.md): feature `{layer}_{index}_{pos}`, error `{layer}_-1_{pos}` (circuit-tracer's later scheme:
its first one, `0_{layer}_{pos}`, collides with layer-0 features), embedding `E_{token}_{pos}`, logit
`{n_layers+1}_{token}_{pos}`. An imported file keeps its own ids, whatever scheme wrote them: the page tells
node kinds by `feature_type`, never by the shape of an id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from circuitboard.engine.graph import Graph, PruneResult

SCHEMA_VERSION = 1
FEATURE, ERROR, EMBEDDING, LOGIT = "cross layer transcoder", "mlp reconstruction error", "embedding", "logit"

# ------------------------------------------------------------------------------------------------ ids


def feature_id(layer: int, feature: int, pos: int) -> str:
    return f"{layer}_{feature}_{pos}"


def error_id(layer: int | str, pos: int) -> str:
    return f"{layer}_-1_{pos}"


def embedding_id(token: int, pos: int) -> str:
    return f"E_{token}_{pos}"


def logit_id(n_layers: int, token: int, pos: int) -> str:
    return f"{n_layers + 1}_{token}_{pos}"


def node_ids(graph: Graph) -> list[str]:
    """Node ids in adjacency order: [selected features | errors (layer-major) | tokens | logits]."""
    P = graph.n_pos
    ids = [feature_id(layer, feat, pos) for layer, pos, feat in graph.active_features[graph.selected_features].tolist()]
    ids += [error_id(layer, pos) for layer in range(graph.n_layers) for pos in range(P)]
    ids += [embedding_id(int(tok), pos) for pos, tok in enumerate(graph.input_tokens.tolist())]
    ids += [logit_id(graph.n_layers, tok, P - 1) for tok in graph.logit_tokens]
    return ids


def cantor(x: int, y: int) -> int:
    """circuit-tracer's one-number feature id (the `feature` field of a feature node) of (layer, index)."""
    return (x + y) * (x + y + 1) // 2 + y


def cantor_unpair(z: int) -> tuple[int, int]:
    w = int(((8 * z + 1) ** 0.5 - 1) // 2)
    while (w + 1) * (w + 2) // 2 <= z:  # guard against float rounding on large ids
        w += 1
    while w * (w + 1) // 2 > z:
        w -= 1
    y = z - w * (w + 1) // 2
    return w - y, y


# ------------------------------------------------------------------------------------------------ export


def graph_to_json(
    graph: Graph, prune: PruneResult, *, slug: str, scan: str, node_threshold: float, info: dict | None = None
) -> dict[str, Any]:
    ids = node_ids(graph)
    features = _Features(graph)
    nodes = [_node_json(graph, features, ids[i], i, float(prune.cumulative_scores[i])) for i in _kept(prune)]
    rows, sources = prune.edge_mask.nonzero(as_tuple=True)  # rows of Graph.rows: features, then logits
    weights = graph.rows[rows, sources].tolist()
    targets = graph.row_nodes[rows]
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


def _kept(prune: PruneResult) -> list[int]:
    return prune.node_mask.nonzero(as_tuple=True)[0].tolist()


class _Features:
    """(layer, pos, feature) and activation of each selected feature, as Python numbers, read once."""

    def __init__(self, graph: Graph) -> None:
        self.coords: list[list[int]] = graph.active_features[graph.selected_features].tolist()
        self.acts: list[float] = graph.activation_values[graph.selected_features].tolist()


def _node_json(graph: Graph, features: _Features, node_id: str, i: int, influence: float) -> dict[str, Any]:
    """Node `i` of the adjacency order; its kind follows from the slice of the order it falls in."""
    n_feat, P = graph.n_features, graph.n_pos
    if i < n_feat:
        layer, pos, feat = features.coords[i]
        js = f"{layer}_{feat}-0"
        return _node(node_id, cantor(layer, feat), str(layer), pos, FEATURE, influence, features.acts[i], js)
    if i < graph.token_slice.start:
        layer, pos = divmod(i - n_feat, P)
        return _node(node_id, -1, str(layer), pos, ERROR, influence, None, f"{layer}_-1-{pos}")
    if i < graph.logit_slice.start:
        pos = i - graph.token_slice.start
        tok = int(graph.input_tokens[pos])
        return _node(node_id, pos, "E", pos, EMBEDDING, influence, None, f"E_{tok}-{pos}")
    k = i - graph.logit_slice.start
    tok, prob = graph.logit_tokens[k], float(graph.logit_probabilities[k])
    node = _node(node_id, tok, str(graph.n_layers + 1), P - 1, LOGIT, influence, None, f"L_{tok}-{P - 1}")
    # circuit-tracer's viewer starts from one target logit: ours is the first.
    node.update(token_prob=prob, is_target_logit=k == 0, clerp=f'Output "{graph.logit_strings[k]}" (p={prob:.3f})')
    return node


def _node(
    node_id: str, feature: int, layer: str, pos: int, ftype: str, influence: float, activation: float | None, js: str
) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "feature": feature,
        "layer": layer,
        "ctx_idx": pos,
        "feature_type": ftype,
        "token_prob": 0.0,
        "is_target_logit": False,
        "run_idx": 0,
        "reverse_ctx_idx": 0,
        "jsNodeId": js,
        "clerp": "",
        "influence": influence,
        "activation": activation,
    }


# ------------------------------------------------------------------------------------------------ import
# A graph file is kept as it was written, its node ids and unknown fields included (Neuronpedia and
# circuit-tracer add their own), so that exporting an imported file gives the file back. The models name only
# what we read, so a missing or mistyped field is an error that names it.

_MAX_INT = 2**53  # integers a browser's JSON.parse still reads exactly
_LAYER = re.compile(r"^(E|\d{1,6})$")


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class NodeIn(_Loose):
    node_id: str = Field(min_length=1, max_length=200)
    feature: int | None = Field(default=None, ge=-_MAX_INT, le=_MAX_INT)
    layer: str | int = Field(description='"E" for embeddings, else the layer number')
    ctx_idx: int = Field(ge=0, le=2**31 - 1)
    feature_type: str
    influence: float | None = None
    activation: float | None = None

    @field_validator("layer")
    @classmethod
    def _layer(cls, v: str | int) -> str | int:
        if isinstance(v, int) and not 0 <= v < 10**6 or isinstance(v, str) and not _LAYER.match(v):
            raise ValueError(f'layer must be "E" or a non-negative layer number (got {v!r})')
        return v


class LinkIn(_Loose):
    source: str
    target: str
    weight: float = Field(description="a finite number")


class MetadataIn(_Loose):
    prompt_tokens: list[str]
    prompt: str | None = None
    slug: str | None = None
    scan: str | None = None
    info: dict[str, Any] | None = None


class GraphIn(_Loose):
    metadata: MetadataIn
    qParams: dict[str, Any] = Field(default_factory=dict)
    nodes: list[NodeIn] = Field(min_length=1)
    links: list[LinkIn]


class GraphFormatError(ValueError):
    """A graph file that does not fit the schema. `problems`: (path inside the file, message, offending value),
    the first one first; the exception's text lists them all."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str, Any]]) -> None:
        super().__init__("; ".join(_where(loc, msg) for loc, msg, _ in problems))
        self.problems = problems

    @property
    def loc(self) -> tuple[str | int, ...]:
        return self.problems[0][0]

    @property
    def value(self) -> Any:
        return self.problems[0][2]

    @property
    def first(self) -> str:
        """The first problem as `path: message`."""
        return _where(self.loc, self.problems[0][1])


def _where(loc: tuple[str | int, ...], msg: str) -> str:
    return f"{'.'.join(str(p) for p in loc)}: {msg}" if loc else msg


@dataclass(frozen=True)
class GraphFile:
    """A validated graph file and what it says about itself (for the listing)."""

    graph: dict[str, Any]
    prompt: str
    model: str
    transcoders: str
    slug: str | None


def read_graph_file(data: Any) -> GraphFile:
    """Validate a circuit-tracer / Neuronpedia graph JSON; `data` itself, unchanged, is returned as `graph`.
    Raises GraphFormatError."""
    parsed = _parse(data)
    _check_ids(parsed)
    md = parsed.metadata
    info = md.info or {}
    return GraphFile(
        graph=data,
        prompt=md.prompt if md.prompt is not None else "".join(md.prompt_tokens),
        model=str(info.get("model") or md.scan or "unknown"),
        transcoders=str(info.get("transcoders") or info.get("transcoder_set") or ""),
        slug=md.slug,
    )


def graph_from_json(data: Any) -> dict[str, Any]:
    """The graph JSON of `read_graph_file`."""
    return read_graph_file(data).graph


def _parse(data: Any) -> GraphIn:
    if not isinstance(data, dict):
        raise GraphFormatError([((), "a graph file is a JSON object {metadata, nodes, links}", None)])
    try:
        return GraphIn.model_validate(data)
    except ValidationError as e:
        raise GraphFormatError(
            [(tuple(err["loc"]), err["msg"], err.get("input")) for err in e.errors(include_url=False)]
        ) from None


def _check_ids(graph: GraphIn) -> None:
    """Node ids are unique and every link joins two of them."""
    ids: set[str] = set()
    for i, node in enumerate(graph.nodes):
        if node.node_id in ids:
            raise GraphFormatError([(("nodes", i, "node_id"), _duplicate(graph.nodes, node), node.node_id)])
        ids.add(node.node_id)
    for i, link in enumerate(graph.links):
        for end in ("source", "target"):
            nid = getattr(link, end)
            if nid not in ids:
                raise GraphFormatError([(("links", i, end), f"unknown node id {nid!r}", nid)])


_OLD_ERROR_ID = re.compile(r"^0_(\d+)_(\d+)$")


def _duplicate(nodes: list[NodeIn], node: NodeIn) -> str:
    """The message for a repeated node id; circuit-tracer <= 0.5 wrote such files by itself."""
    msg = f"duplicate {node.node_id!r}"
    if _OLD_ERROR_ID.match(node.node_id) and any(n.node_id == node.node_id and n.feature_type == ERROR for n in nodes):
        msg += (
            " (circuit-tracer <= 0.5 named error nodes 0_{layer}_{pos}, the id of a layer-0 feature, so its "
            "links cannot be told apart; export the graph again with a newer circuit-tracer)"
        )
    return msg
