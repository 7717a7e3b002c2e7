"""Validation and normalisation of an uploaded graph file (circuit-tracer `create_graph_files` / Neuronpedia
schema). The file is kept as uploaded, unknown fields included, except that old error ids are rewritten."""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from circuitboard.api.errors import field_error

_OLD_ERROR_ID = re.compile(r"^0_(\d+)_(\d+)$")
_ERROR_TYPE = "mlp reconstruction error"


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class NodeIn(_Loose):
    node_id: str = Field(min_length=1)
    feature: int | None = None
    layer: str | int
    ctx_idx: int = Field(ge=0)
    feature_type: str
    influence: float | None = None
    activation: float | None = None


class LinkIn(_Loose):
    source: str
    target: str
    weight: float

    @field_validator("weight")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("weight must be a finite number")
        return v


class MetadataIn(_Loose):
    prompt_tokens: list[str]
    prompt: str | None = None
    slug: str | None = None
    scan: str | None = None
    info: dict[str, Any] | None = None


class GraphFileIn(_Loose):
    metadata: MetadataIn
    qParams: dict[str, Any] = Field(default_factory=dict)
    nodes: list[NodeIn] = Field(min_length=1)
    links: list[LinkIn]


class ValidGraphFile(BaseModel):
    graph: dict[str, Any]
    prompt: str
    model: str
    transcoders: str
    slug: str | None


def _loc(field: str, err: dict[str, Any]) -> tuple[str | int, ...]:
    return ("body", field, *err["loc"])


def validate_graph_file(data: Any, field: str = "file") -> ValidGraphFile:
    """Raises a RequestValidationError whose `loc` names the upload field and the path inside the file."""
    if not isinstance(data, dict):
        raise field_error(("body", field), f"{field}: a graph file is a JSON object {{metadata, nodes, links}}")
    try:
        parsed = GraphFileIn.model_validate(data)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise field_error(_loc(field, err), f"{field}: {where}: {err['msg']}", err.get("input")) from None

    renames = _old_error_ids(parsed.nodes)
    ids: set[str] = set()
    for i, node in enumerate(parsed.nodes):
        nid = renames.get(node.node_id, node.node_id)
        if nid in ids:
            raise field_error(("body", field, "nodes", i, "node_id"), f"{field}: nodes.{i}.node_id: duplicate {nid!r}")
        ids.add(nid)
    for i, link in enumerate(parsed.links):
        for end in ("source", "target"):
            nid = getattr(link, end)
            if renames.get(nid, nid) not in ids:
                raise field_error(
                    ("body", field, "links", i, end), f"{field}: links.{i}.{end}: unknown node id {nid!r}", nid
                )

    if renames:
        _apply_renames(data, renames)
    md = parsed.metadata
    info = md.info or {}
    prompt = md.prompt if md.prompt is not None else "".join(md.prompt_tokens)
    return ValidGraphFile(
        graph=data,
        prompt=prompt,
        model=str(info.get("model") or md.scan or "unknown"),
        transcoders=str(info.get("transcoders") or info.get("transcoder_set") or ""),
        slug=md.slug,
    )


def _old_error_ids(nodes: list[NodeIn]) -> dict[str, str]:
    """circuit-tracer <= 0.5 named error nodes `0_{layer}_{pos}`, which collides with feature ids; the
    current scheme (and ours) is `{layer}_-1_{pos}`."""
    out: dict[str, str] = {}
    for node in nodes:
        m = _OLD_ERROR_ID.match(node.node_id)
        if node.feature_type == _ERROR_TYPE and m and m.group(1) == str(node.layer) and int(m.group(2)) == node.ctx_idx:
            out[node.node_id] = f"{node.layer}_-1_{node.ctx_idx}"
    return out


def _apply_renames(data: dict[str, Any], renames: dict[str, str]) -> None:
    for node in data["nodes"]:
        if node["node_id"] in renames:
            node["node_id"] = renames[node["node_id"]]
    for link in data["links"]:
        link["source"] = renames.get(link["source"], link["source"])
        link["target"] = renames.get(link["target"], link["target"])
    q = data.get("qParams")
    if isinstance(q, dict) and isinstance(q.get("pinnedIds"), list):
        q["pinnedIds"] = [renames.get(p, p) if isinstance(p, str) else p for p in q["pinnedIds"]]
