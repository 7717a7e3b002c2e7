"""The difference of two graphs of one model and transcoder set (e.g. the same prompt with one word changed).

Positions are aligned by the prompts' tokens (difflib): tokens of equal runs pair up, and in a replaced run the
last tokens pair up from the end (a word's last token carries it), so "Dallas" and "Chicago" line up however
many tokens each takes, and so do the tokens after them. Nodes are matched by kind and aligned position:
features by (layer, index), errors by layer, embeddings by position alone, logits by token. A matched node has
`changed` when its activation (features) or probability (logits) or token (embeddings) differs by more than
`tolerance` relative to the larger side; a link `changed` when its weight does.
"""

from __future__ import annotations

import difflib
from typing import Literal

from pydantic import BaseModel, Field

from circuitboard.engine.linkgraph import LinkGraph

Status = Literal["only_a", "only_b", "changed", "shared"]
Key = tuple[str | int, ...]


class GraphsDiffer(ValueError):
    """Two graphs that cannot be compared (different models or transcoders)."""


class DiffNode(BaseModel):
    id: str = Field(description="graph a's node id, or 'b:' + graph b's for a node only b has")
    node_id_a: str | None
    node_id_b: str | None
    feature_type: str = Field(description="feature | error | embedding | logit")
    layer: int
    feature: int = Field(description="feature index; token id for embeddings and logits; -1 for errors")
    ctx_idx_a: int | None
    ctx_idx_b: int | None
    status: Status
    activation_a: float | None
    activation_b: float | None
    influence_a: float | None
    influence_b: float | None
    change: float = Field(description="0..1: 1 on one side only, else |Δ| / the larger side")


class DiffLink(BaseModel):
    source: str
    target: str
    weight_a: float | None
    weight_b: float | None
    delta: float = Field(description="weight_b − weight_a (a missing side counts as 0)")
    status: Status


class DiffSummary(BaseModel):
    only_a: int
    only_b: int
    shared: int
    changed: int


class GraphDiff(BaseModel):
    alignment: list[tuple[int, int]] = Field(description="[position in a, position in b] of aligned tokens")
    summary: DiffSummary = Field(description="node counts, every kind of node")
    nodes: list[DiffNode] = Field(description="most changed first")
    links: list[DiffLink] = Field(description="largest |delta| first")


def align_positions(tokens_a: list[str], tokens_b: list[str]) -> list[tuple[int, int]]:
    pairs: list[tuple[int, int]] = []
    matcher = difflib.SequenceMatcher(None, tokens_a, tokens_b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            pairs += [(i1 + k, j1 + k) for k in range(i2 - i1)]
        elif op == "replace":
            n = min(i2 - i1, j2 - j1)
            pairs += [(i2 - n + k, j2 - n + k) for k in range(n)]
    return pairs


def diff_graphs(a: LinkGraph, b: LinkGraph, tolerance: float = 0.01, include_shared: bool = False) -> GraphDiff:
    if a.model_names() != b.model_names():
        raise GraphsDiffer(
            f"graphs of different models or transcoders cannot be compared: {a.model_names()} vs {b.model_names()}"
        )
    alignment = align_positions(a.prompt_tokens, b.prompt_tokens)
    b_to_a = {j: i for i, j in alignment}
    keys_a = [_key(a, i, lambda p: p) for i in range(a.n_nodes)]
    keys_b = [_key(b, i, lambda q: b_to_a.get(q, f"b{q}")) for i in range(b.n_nodes)]
    in_a = {k: i for i, k in enumerate(keys_a)}
    in_b = {k: i for i, k in enumerate(keys_b)}
    ids = {k: a.ids[i] for k, i in in_a.items()}
    ids.update({k: f"b:{b.ids[i]}" for k, i in in_b.items() if k not in ids})
    nodes = [_node(a, b, in_a.get(k), in_b.get(k), ids[k], tolerance) for k in ids]
    links = _links(a, b, keys_a, keys_b, ids, tolerance)
    summary = DiffSummary(**{s: sum(n.status == s for n in nodes) for s in ("only_a", "only_b", "shared", "changed")})
    if not include_shared:
        nodes = [n for n in nodes if n.status != "shared"]
        links = [lk for lk in links if lk.status != "shared"]
    nodes.sort(key=lambda n: (-n.change, min(n.influence_a or 1.0, n.influence_b or 1.0)))
    links.sort(key=lambda lk: -abs(lk.delta))
    return GraphDiff(alignment=alignment, summary=summary, nodes=nodes, links=links)


def _key(g: LinkGraph, i: int, where) -> Key:
    kind, pos = g.kinds[i], where(int(g.pos[i]))
    if kind == "feature":
        return ("feature", int(g.layer[i]), int(g.index[i]), pos)
    if kind == "error":
        return ("error", int(g.layer[i]), pos)
    if kind == "embedding":
        return ("embedding", pos)
    return ("logit", int(g.index[i]))


def _change(x: float | None, y: float | None) -> float:
    if x is None or y is None:
        return 0.0
    top = max(abs(x), abs(y))
    return 0.0 if top == 0 else abs(x - y) / top


def _node(a: LinkGraph, b: LinkGraph, i: int | None, j: int | None, nid: str, tolerance: float) -> DiffNode:
    g, k = (a, i) if i is not None else (b, j)
    assert k is not None
    kind = g.kinds[k]
    act_a, act_b = _value(a, i), _value(b, j)
    if i is None or j is None:
        status: Status = "only_a" if j is None else "only_b"
        change = 1.0
    else:
        change = 1.0 if kind == "embedding" and int(a.index[i]) != int(b.index[j]) else _change(act_a, act_b)
        status = "changed" if change > tolerance else "shared"
    return DiffNode(
        id=nid,
        node_id_a=a.ids[i] if i is not None else None,
        node_id_b=b.ids[j] if j is not None else None,
        feature_type=kind,
        layer=int(g.layer[k]),
        feature=int(g.index[k]),
        ctx_idx_a=int(a.pos[i]) if i is not None else None,
        ctx_idx_b=int(b.pos[j]) if j is not None else None,
        status=status,
        activation_a=act_a,
        activation_b=act_b,
        influence_a=float(a.influence[i]) if i is not None else None,
        influence_b=float(b.influence[j]) if j is not None else None,
        change=change,
    )


def _value(g: LinkGraph, i: int | None) -> float | None:
    """What a node's change is measured on: a feature's activation, a logit's probability."""
    if i is None:
        return None
    kind = g.kinds[i]
    if kind == "feature":
        return float(g.activation[i])
    return float(g.prob[i]) if kind == "logit" else None


def _links(
    a: LinkGraph, b: LinkGraph, keys_a: list[Key], keys_b: list[Key], ids: dict[Key, str], tolerance: float
) -> list[DiffLink]:
    wa = _weights(a, keys_a)
    wb = _weights(b, keys_b)
    out = []
    for edge in {**wa, **wb}:
        x, y = wa.get(edge), wb.get(edge)
        if x is None or y is None:
            status: Status = "only_a" if y is None else "only_b"
        else:
            status = "changed" if _change(x, y) > tolerance else "shared"
        out.append(
            DiffLink(
                source=ids[edge[0]],
                target=ids[edge[1]],
                weight_a=x,
                weight_b=y,
                delta=(y or 0.0) - (x or 0.0),
                status=status,
            )
        )
    return out


def _weights(g: LinkGraph, keys: list[Key]) -> dict[tuple[Key, Key], float]:
    out: dict[tuple[Key, Key], float] = {}
    for s, t, w in zip(g.src.tolist(), g.tgt.tolist(), g.weight.tolist(), strict=True):
        out[(keys[s], keys[t])] = out.get((keys[s], keys[t]), 0.0) + w
    return out
