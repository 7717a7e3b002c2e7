"""A stored graph (graph JSON: `{metadata, qParams, nodes, links}`) as index arrays, for the analyses that work
on the pruned graph the page shows: suggested supernodes, predicted intervention effects, graph diffs.

Node ids follow the scheme of `circuitboard.engine.export` (feature `{layer}_{index}_{pos}`, error
`{layer}_-1_{pos}`, embedding `E_{token}_{pos}`, logit `{n_layers+1}_{token}_{pos}`); `W[t, s]` is the weight of
the link s -> t (rows = targets, as the engine's adjacency).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from circuitboard.engine.export import EMBEDDING, ERROR, FEATURE, LOGIT

KINDS = {FEATURE: "feature", ERROR: "error", EMBEDDING: "embedding", LOGIT: "logit"}


class GraphShapeError(ValueError):
    """A graph JSON this analysis cannot read (an unknown node kind, a link to a missing node)."""


@dataclass
class LinkGraph:
    ids: list[str]
    kinds: list[str]  # feature | error | embedding | logit
    layer: torch.Tensor  # [N] feature / error layer; -1 for embeddings, n_layers + 1 for logits
    index: torch.Tensor  # [N] feature index; the token id of embeddings and logits; -1 for errors
    pos: torch.Tensor  # [N] position in the prompt
    activation: torch.Tensor  # [N] float64; 0 where the node has none
    influence: torch.Tensor  # [N] cumulative influence fraction (lower = more important); 1 when absent
    prob: torch.Tensor  # [N] the probability of logit nodes (their weight in influence), 0 elsewhere
    src: torch.Tensor  # [E] link sources (node indices)
    tgt: torch.Tensor  # [E] link targets
    weight: torch.Tensor  # [E] float64
    labels: list[str]  # the node's `clerp` (logit nodes: 'Output "x" (p=...)')
    metadata: dict[str, Any]
    q_params: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinkGraph:
        nodes = data.get("nodes") or []
        ids = [str(n["node_id"]) for n in nodes]
        where = {nid: i for i, nid in enumerate(ids)}
        kinds, layer, index = [], [], []
        for n in nodes:
            kind = KINDS.get(n.get("feature_type", ""))
            if kind is None:
                raise GraphShapeError(f"node {n['node_id']!r}: unknown feature_type {n.get('feature_type')!r}")
            kinds.append(kind)
            lay, idx = _layer_index(kind, str(n["node_id"]))
            layer.append(lay)
            index.append(idx)
        links = data.get("links") or []
        try:
            src = [where[str(link["source"])] for link in links]
            tgt = [where[str(link["target"])] for link in links]
        except KeyError as e:
            raise GraphShapeError(f"a link names the unknown node {e.args[0]!r}") from None
        return cls(
            ids=ids,
            kinds=kinds,
            layer=torch.tensor(layer, dtype=torch.long),
            index=torch.tensor(index, dtype=torch.long),
            pos=torch.tensor([int(n.get("ctx_idx", 0)) for n in nodes], dtype=torch.long),
            activation=_floats(nodes, "activation", 0.0),
            influence=_floats(nodes, "influence", 1.0),
            prob=torch.tensor(
                [float(n.get("token_prob") or 0.0) if k == "logit" else 0.0 for n, k in zip(nodes, kinds, strict=True)],
                dtype=torch.float64,
            ),
            src=torch.tensor(src, dtype=torch.long),
            tgt=torch.tensor(tgt, dtype=torch.long),
            weight=torch.tensor([float(link["weight"]) for link in links], dtype=torch.float64),
            labels=[str(n.get("clerp") or "") for n in nodes],
            metadata=dict(data.get("metadata") or {}),
            q_params=dict(data.get("qParams") or {}),
        )

    @property
    def n_nodes(self) -> int:
        return len(self.ids)

    def of_kind(self, kind: str) -> list[int]:
        return [i for i, k in enumerate(self.kinds) if k == kind]

    def matvec(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """W @ x (links weighted by `weight`, default their own), one term per link: no N × N matrix."""
        w = self.weight if weight is None else weight
        return torch.zeros(self.n_nodes, dtype=x.dtype).index_add_(0, self.tgt, w * x[self.src])

    def rmatvec(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Wᵀ @ x, as `matvec`."""
        w = self.weight if weight is None else weight
        return torch.zeros(self.n_nodes, dtype=x.dtype).index_add_(0, self.src, w * x[self.tgt])

    @property
    def prompt_tokens(self) -> list[str]:
        return [str(t) for t in self.metadata.get("prompt_tokens") or []]

    @property
    def prompt(self) -> str:
        given = self.metadata.get("prompt")
        return str(given) if given is not None else "".join(self.prompt_tokens)

    @property
    def info(self) -> dict[str, Any]:
        return dict(self.metadata.get("info") or {})

    def model_names(self) -> tuple[str, str]:
        """(model, transcoders) the graph was traced with, as its metadata names them ('' when it does not)."""
        info = self.info
        model = info.get("model") or self.metadata.get("scan") or ""
        transcoders = info.get("transcoders") or info.get("transcoder_set") or ""
        return str(model), str(transcoders)

    def feature_coords(self, nodes: list[int]) -> list[tuple[int, int, int]]:
        """(layer, index, position) of feature nodes."""
        return [(int(self.layer[i]), int(self.index[i]), int(self.pos[i])) for i in nodes]


def _layer_index(kind: str, node_id: str) -> tuple[int, int]:
    parts = node_id.split("_")
    try:
        if kind == "embedding":
            return -1, int(parts[1])
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        raise GraphShapeError(f"node id {node_id!r} does not follow the {kind} id scheme") from None


def _floats(nodes: list[dict[str, Any]], key: str, default: float) -> torch.Tensor:
    values = [n.get(key) for n in nodes]
    return torch.tensor([float(v) if v is not None else default for v in values], dtype=torch.float64)
