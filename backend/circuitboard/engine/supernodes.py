"""Suggested supernodes: group the feature nodes of a graph that play the same role.

Two features play the same role when they read from the same nodes and write to the same nodes (cosine of
their signed, normalised input and output edge profiles), write the same direction (cosine of decoder rows),
and share top tokens in the atlas (Jaccard); features far apart in the prompt or in depth are kept apart by
penalties.
The evidence at hand is averaged into one distance in [0, 1] and scipy's average-linkage hierarchical
clustering is cut at a distance set by `granularity` (0: few large groups, 1: every feature alone).

A group's score is the share of the logits' influence that flows through it: influence mass leaves the logit
nodes (their probabilities), spreads over sources in proportion to |weight| (row-normalised, as the graph's
influence), and ends at nodes without inputs (tokens, errors); the score is the share of that end mass that
no longer arrives when the group's nodes are removed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, Field

from circuitboard.engine.linkgraph import LinkGraph
from circuitboard.engine.transcoders import TranscoderSet

# Relative weight of each kind of evidence (averaged over the kinds available), and the position penalty.
WEIGHTS = {"inputs": 1.0, "outputs": 1.5, "decoder": 1.0, "tokens": 0.5}
# Penalties added at |Δposition| >= POSITION_SPAN (|Δlayer| >= LAYER_SPAN), linearly below: a role sits at one
# token (or a word's few) and in a few adjacent layers.
POSITION_PENALTY, POSITION_SPAN = 0.3, 4
LAYER_PENALTY, LAYER_SPAN = 0.2, 4
MAX_CUT = 0.5  # the cut distance at granularity 0 (0.5 = no better than unrelated directions)
MAX_CANDIDATES = 1500  # features grouped at most: the distances are n × n, the edge profiles n × N


class SuggestRequest(BaseModel):
    granularity: float = Field(default=0.5, ge=0.0, le=1.0, description="0: few large groups … 1: every feature alone")
    pinned_only: bool = Field(
        default=False, description="group only pinned nodes (`pinned_ids`, else the graph's own pins)"
    )
    pinned_ids: list[str] | None = Field(default=None, description="the page's pinned node ids")


class SuggestResult(BaseModel):
    supernodes: list[list[str]] = Field(description='[["label", node_id, ...], ...], best score first')
    scores: list[float] = Field(description="per supernode: the share of the logits' influence through it")


@dataclass
class Evidence:
    """What the layers above the graph know of its feature nodes (in the order of `nodes`); None: unknown."""

    decoder: torch.Tensor | None = None  # [n, d] decoder directions
    top_tokens: Sequence[set[str]] | None = None  # atlas top tokens (input and output side)
    labels: Sequence[str | None] | None = None  # atlas labels


def decoder_directions(tset: TranscoderSet, features: list[tuple[int, int]]) -> torch.Tensor:
    """[n, d]: what each (layer, index) feature writes, summed over the layers it writes to (CLT)."""
    out = torch.zeros(len(features), tset.d_model, dtype=torch.float32)
    for layer in sorted({f[0] for f in features}):
        at = [i for i, f in enumerate(features) if f[0] == layer]
        idx = torch.tensor([features[i][1] for i in at], dtype=torch.long)
        out[at] = tset.decoder_rows(layer, idx).sum(1).float().cpu()
    return out


def candidate_nodes(graph: LinkGraph, req: SuggestRequest) -> list[int]:
    """Feature nodes to group: the pinned ones, or all of them (the MAX_CANDIDATES most influential)."""
    features = graph.of_kind("feature")
    if req.pinned_only:
        pinned = set(req.pinned_ids if req.pinned_ids is not None else graph.q_params.get("pinnedIds") or [])
        features = [i for i in features if graph.ids[i] in pinned]
    if len(features) > MAX_CANDIDATES:  # lower influence = more important
        features = sorted(sorted(features, key=lambda i: float(graph.influence[i]))[:MAX_CANDIDATES])
    return features


def suggest(graph: LinkGraph, nodes: list[int], evidence: Evidence, granularity: float) -> SuggestResult:
    """Groups of two or more of `nodes`, labelled and scored, best score first."""
    if len(nodes) < 2:
        return SuggestResult(supernodes=[], scores=[])
    clusters = cluster(feature_distances(graph, nodes, evidence), granularity)
    groups = [members for members in _groups(clusters) if len(members) >= 2]
    flow = InfluenceFlow(graph)
    rows = []
    for members in groups:
        node_idx = [nodes[m] for m in members]
        label = propose_label(graph, node_idx, evidence, members)
        rows.append((flow.share_through(node_idx), label, [graph.ids[i] for i in node_idx]))
    rows.sort(key=lambda r: -r[0])
    return SuggestResult(supernodes=[[label, *ids] for _, label, ids in rows], scores=[s for s, _, _ in rows])


# ------------------------------------------------------------------------------------------------ distances


def feature_distances(graph: LinkGraph, nodes: list[int], evidence: Evidence) -> np.ndarray:
    """[n, n] distances in [0, 1]: the weighted mean of each kind of evidence's distance, plus the penalty."""
    idx = torch.tensor(nodes, dtype=torch.long)
    inputs, outputs = _edge_profiles(graph, idx)
    terms = {"inputs": _cosine_distance(inputs), "outputs": _cosine_distance(outputs)}
    if evidence.decoder is not None:
        terms["decoder"] = _cosine_distance(evidence.decoder.double())
    if evidence.top_tokens is not None:
        terms["tokens"] = _jaccard_distance(evidence.top_tokens)
    total = sum(WEIGHTS[k] for k in terms)
    dist = torch.zeros(len(nodes), len(nodes), dtype=torch.float64)
    for kind, d in terms.items():
        dist += WEIGHTS[kind] * d / total
    for where, penalty, span in (
        (graph.pos, POSITION_PENALTY, POSITION_SPAN),
        (graph.layer, LAYER_PENALTY, LAYER_SPAN),
    ):
        at = where[idx].double()
        dist = dist + penalty * (at[:, None] - at[None, :]).abs().clamp(max=span) / span
    dist = dist.clamp(0.0, 1.0)
    dist.fill_diagonal_(0.0)
    return dist.numpy()


def _edge_profiles(graph: LinkGraph, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """([n, N] weights of the links into each node, [n, N] of the links out of it), signed."""
    row = torch.full((graph.n_nodes,), -1, dtype=torch.long)
    row[idx] = torch.arange(len(idx))
    profiles = []
    for here, there in ((graph.tgt, graph.src), (graph.src, graph.tgt)):
        out = torch.zeros(len(idx), graph.n_nodes, dtype=torch.float64)
        m = row[here] >= 0
        out.index_put_((row[here[m]], there[m]), graph.weight[m], accumulate=True)
        profiles.append(out)
    return profiles[0], profiles[1]


def _cosine_distance(rows: torch.Tensor) -> torch.Tensor:
    """(1 − cos) / 2 between rows; a zero row is at 0.5 from everything (unknown, not opposite)."""
    unit = rows / rows.norm(dim=1, keepdim=True).clamp(min=1e-30)
    return (1 - unit @ unit.T) / 2


def _jaccard_distance(sets: Sequence[set[str]]) -> torch.Tensor:
    vocab = {t: k for k, t in enumerate(sorted(set().union(*sets)))}
    member = torch.zeros(len(sets), len(vocab), dtype=torch.float64)
    for i, tokens in enumerate(sets):
        member[i, [vocab[t] for t in tokens]] = 1
    inter = member @ member.T
    size = member.sum(1)
    union = size[:, None] + size[None, :] - inter
    known = (size[:, None] > 0) & (size[None, :] > 0)
    # no tokens known on a side: neither close nor far
    return torch.where(known, 1 - inter / union.clamp(min=1), torch.full_like(inter, 0.5))


def cluster(dist: np.ndarray, granularity: float) -> np.ndarray:
    """Cluster ids (1..k) of average-linkage clustering cut at MAX_CUT × (1 − granularity)."""
    from scipy.cluster.hierarchy import fcluster, linkage  # here: scipy costs a second to import

    n = dist.shape[0]
    condensed = dist[np.triu_indices(n, k=1)]
    tree = linkage(condensed, method="average")
    return np.asarray(fcluster(tree, t=MAX_CUT * (1.0 - granularity), criterion="distance"))


def _groups(clusters: np.ndarray) -> list[list[int]]:
    by_id: dict[int, list[int]] = {}
    for member, cid in enumerate(clusters.tolist()):
        by_id.setdefault(int(cid), []).append(member)
    return list(by_id.values())


# ------------------------------------------------------------------------------------------------ scores


class InfluenceFlow:
    """Influence mass from the logits to the nodes without inputs, through row-normalised |W|."""

    def __init__(self, graph: LinkGraph) -> None:
        self.graph = graph
        sums = graph.matvec(torch.ones(graph.n_nodes, dtype=torch.float64), graph.weight.abs())
        self.ends = sums == 0
        self.norm = graph.weight.abs() / sums[graph.tgt]  # the links of Â = |W| / row sums
        logits = torch.tensor(graph.of_kind("logit"), dtype=torch.long)
        self.start = torch.zeros(graph.n_nodes, dtype=torch.float64)
        if len(logits):
            p = graph.prob[logits]
            self.start[logits] = p / p.sum() if p.sum() > 0 else torch.full_like(p, 1 / len(logits))
        self.full = self.end_mass(None)

    def end_mass(self, removed: list[int] | None) -> float:
        mass, total = self.start.clone(), 0.0
        for _ in range(len(mass) + 1):  # a DAG: every path has at most N edges
            total += float(mass[self.ends].sum())
            mass = self.graph.rmatvec(mass, self.norm)  # mass @ Â
            if removed:
                mass[removed] = 0  # mass sent to a removed node is lost
            if not mass.any():
                break
        return total

    def share_through(self, nodes: list[int]) -> float:
        if self.full <= 0:
            return 0.0
        return max(0.0, 1.0 - self.end_mass(nodes) / self.full)


# ------------------------------------------------------------------------------------------------ labels

_WORD = re.compile(r"[A-Za-z0-9']+")
_STOP = {"the", "a", "an", "of", "and", "or", "in", "on", "to", "is", "for", "with", "feature", "token", "tokens"}


def propose_label(graph: LinkGraph, nodes: list[int], evidence: Evidence, members: list[int]) -> str:
    """A shared atlas label, else the words most members' labels share, else shared top tokens, else
    the layers and the prompt token of the group."""
    given = [evidence.labels[m] for m in members] if evidence.labels is not None else []
    labels = [label for label in given if label]
    if labels:
        best, count = Counter(labels).most_common(1)[0]
        if 2 * count >= len(members):
            return str(best)
        words = Counter(w for text in labels for w in {w.lower() for w in _WORD.findall(text)} - _STOP)
        shared = [w for w, c in words.most_common(3) if c >= 2]
        if shared:
            return " ".join(shared)
    if evidence.top_tokens is not None:
        tokens = Counter(t for m in members for t in evidence.top_tokens[m])
        shared = [t for t, c in tokens.most_common(2) if c >= 2]
        if shared:
            return " / ".join(repr(t) for t in shared)
    return _fallback_label(graph, nodes)


def _fallback_label(graph: LinkGraph, nodes: list[int]) -> str:
    layers = sorted({int(graph.layer[i]) for i in nodes})
    positions = sorted({int(graph.pos[i]) for i in nodes})
    tokens = graph.prompt_tokens
    where = ", ".join(repr(tokens[p]) if p < len(tokens) else f"@{p}" for p in positions[:3])
    span = f"L{layers[0]}" if len(layers) == 1 else f"L{layers[0]}–{layers[-1]}"
    return f"{span} {where}"
