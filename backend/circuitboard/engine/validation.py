"""Validation by intervention: what the graph predicts for each supernode against what the model does.

For every supernode we ablate it (its features at their positions set to 0) and steer it (× −1, × 2), and
compare the change of the target logits the linear graph predicts with the change measured
(`circuitboard.engine.feature_edits`): `frozen` on the replacement model (frozen attention and norms, the
graph's own linearisation) and `free` on the model itself. The circuit as a whole: sufficiency keeps only the
supernodes' features (every other feature ablated), necessity ablates every supernode at once.

The prediction spreads relative activation changes r along the graph's links: an edited feature has r =
factor − 1, a feature the edit does not touch responds linearly, r_t = Σ_s W[t, s] r_s / a_t (an edge weight is
the source's whole contribution to its target's pre-activation), and a logit changes by Σ_s W[t, s] r_s.
With features in their linear range and the complete graph, `frozen` measures exactly that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, Field

from circuitboard.engine.adapters import Adapter
from circuitboard.engine.feature_edits import FeatureEdits, Readout, model_readout, replacement_readout
from circuitboard.engine.linkgraph import LinkGraph
from circuitboard.engine.replacement import PromptContext, build_context
from circuitboard.engine.transcoders import TranscoderSet
from circuitboard.engine.types import ProgressEvent

Mode = Literal["frozen", "free"]
MODES: tuple[Mode, ...] = ("frozen", "free")
STEER = {"x-1": -1.0, "x2": 2.0}
AGREE_RTOL, AGREE_ATOL = 0.25, 0.05  # |measured − predicted| <= rtol × the larger + atol (in logits)


class ValidateRequest(BaseModel):
    supernodes: list[list[str]] = Field(min_length=1, description='[["label", node_id, ...], ...]')
    targets: list[str] | None = Field(default=None, description="logit node ids of the graph (default: all of them)")
    modes: list[Mode] = Field(default_factory=lambda: list(MODES), min_length=1)


class TargetChange(BaseModel):
    node_id: str
    token_id: int
    logit: float = Field(description="change of the demeaned logit (a logit node's value)")
    prob: float | None = Field(default=None, description="change of the probability (measured only)")


class Effect(BaseModel):
    predicted: list[TargetChange]
    measured: dict[str, list[TargetChange]] = Field(description="by mode")
    predicted_effect: float = Field(description="probability-weighted mean logit change over the targets")
    measured_effect: dict[str, float] = Field(description="by mode, as predicted_effect")


class GroupValidation(BaseModel):
    label: str
    node_ids: list[str]
    predicted_effect: float = Field(description="of ablating the group")
    measured_effect: float = Field(description="of ablating the group, in `measured_mode`")
    agrees: bool
    ablate: Effect
    steer: dict[str, Effect] = Field(description='"x-1" and "x2"')


class CircuitValidation(BaseModel):
    sufficiency: Effect = Field(description="every feature outside the supernodes ablated")
    necessity: Effect = Field(description="every supernode ablated at once")


class ValidationResult(BaseModel):
    targets: list[str]
    modes: list[Mode]
    measured_mode: Mode = Field(description="the mode of each group's measured_effect: free when it ran")
    groups: list[GroupValidation]
    circuit: CircuitValidation


class ValidationInputError(ValueError):
    """A supernode or target the graph does not have; the message names the field."""


@dataclass
class _Group:
    label: str
    nodes: list[int]  # feature node indices of the graph


def check_request(graph: LinkGraph, req: ValidateRequest, vocab_size: int) -> None:
    """Raises ValidationInputError (naming the field) for supernodes or targets the graph does not have: what
    `validate` checks first, for a caller that queues the work and must answer a bad input at once."""
    _groups(graph, req.supernodes)
    _targets(graph, req.targets, vocab_size)


def n_runs(req: ValidateRequest) -> int:
    """Forward passes a validation runs: per mode, the clean one, then per group ablate and two steers, then
    sufficiency and necessity. The `total` of its progress events."""
    return len(req.modes) * (1 + len(STEER) * len(req.supernodes) + len(req.supernodes) + 2)


def validate(
    adapter: Adapter,
    tset: TranscoderSet,
    input_ids: torch.Tensor,
    graph: LinkGraph,
    req: ValidateRequest,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> ValidationResult:
    """`progress` hears of every forward pass (phase "validate", done of `n_runs(req)`); it may raise to stop."""
    groups = _groups(graph, req.supernodes)
    targets = _targets(graph, req.targets, adapter.vocab_size)
    ctx = build_context(adapter, tset, input_ids)
    measure = _Measure(adapter, tset, ctx, req.modes, _Counter(n_runs(req), progress))
    effects = _Effects(graph, targets, LinearPrediction(graph), measure)
    measured_mode: Mode = "free" if "free" in req.modes else "frozen"
    out = [_validate_group(g, effects, measured_mode) for g in groups]
    members = [n for g in groups for n in g.nodes]
    circuit = CircuitValidation(
        sufficiency=effects.of(pinned=[], factor=1.0, keep=members),
        necessity=effects.of(pinned=members, factor=0.0),
    )
    return ValidationResult(
        targets=[graph.ids[t] for t in targets],
        modes=req.modes,
        measured_mode=measured_mode,
        groups=out,
        circuit=circuit,
    )


def _validate_group(group: _Group, effects: _Effects, mode: Mode) -> GroupValidation:
    ablate = effects.of(pinned=group.nodes, factor=0.0)
    steer = {name: effects.of(pinned=group.nodes, factor=f) for name, f in STEER.items()}
    p, m = ablate.predicted_effect, ablate.measured_effect[mode]
    return GroupValidation(
        label=group.label,
        node_ids=[effects.graph.ids[i] for i in group.nodes],
        predicted_effect=p,
        measured_effect=m,
        agrees=abs(m - p) <= AGREE_RTOL * max(abs(m), abs(p)) + AGREE_ATOL,
        ablate=ablate,
        steer=steer,
    )


def _groups(graph: LinkGraph, supernodes: list[list[str]]) -> list[_Group]:
    where = {nid: i for i, nid in enumerate(graph.ids)}
    out = []
    for k, sn in enumerate(supernodes):
        if len(sn) < 2:
            raise ValidationInputError(f"supernodes.{k}: a supernode is [label, node_id, ...] with one node or more")
        nodes = []
        for j, nid in enumerate(sn[1:], start=1):
            i = where.get(nid)
            if i is None or graph.kinds[i] != "feature":
                raise ValidationInputError(f"supernodes.{k}.{j}: {nid!r} is not a feature node of the graph")
            nodes.append(i)
        out.append(_Group(sn[0], nodes))
    return out


def _targets(graph: LinkGraph, given: list[str] | None, vocab_size: int) -> list[int]:
    logits = graph.of_kind("logit")
    if given is not None:
        where = {graph.ids[i]: i for i in logits}
        missing = [t for t in given if t not in where]
        if missing or not given:
            raise ValidationInputError(f"targets: {missing[:1] or given!r}: not logit nodes of the graph")
        logits = [where[t] for t in given]
    virtual = [graph.ids[i] for i in logits if int(graph.index[i]) >= vocab_size]
    if virtual or not logits:
        raise ValidationInputError(f"targets: {virtual[:1]!r} are not logits of the vocabulary (a custom target)")
    return logits


class LinearPrediction:
    """Changes the linear graph predicts for an edit (module docstring)."""

    def __init__(self, graph: LinkGraph) -> None:
        self.graph = graph
        self.act = graph.activation
        self.features = torch.tensor([k == "feature" for k in graph.kinds])
        self.depth = int(graph.layer.max()) + 3 if graph.n_nodes else 1  # every path is shorter

    def changes(self, fixed: dict[int, float]) -> torch.Tensor:
        """Δ of every node's value (pre-activation, logit) when the features in `fixed` change by r = value."""
        r = torch.zeros(len(self.act), dtype=torch.float64)
        free = self.features & (self.act != 0)
        if fixed:
            idx = torch.tensor(list(fixed))
            r[idx] = torch.tensor(list(fixed.values()), dtype=torch.float64)
            free[idx] = False
        for _ in range(self.depth):
            delta = self.graph.matvec(r)
            nxt = r.clone()
            nxt[free] = delta[free] / self.act[free]
            if torch.equal(nxt, r):
                break
            r = nxt
        return self.graph.matvec(r)


class _Counter:
    """Counts forward passes for the progress callback."""

    def __init__(self, total: int, progress: Callable[[ProgressEvent], None] | None) -> None:
        self.total, self.done, self.progress = total, 0, progress

    def tick(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(ProgressEvent(phase="validate", done=min(self.done, self.total), total=self.total))


class _Measure:
    """Readouts of the last position, clean and edited, per mode."""

    def __init__(
        self, adapter: Adapter, tset: TranscoderSet, ctx: PromptContext, modes: list[Mode], counter: _Counter
    ) -> None:
        run: dict[str, Callable[[FeatureEdits], Readout]] = {
            "frozen": lambda e: replacement_readout(adapter, tset, ctx, e),
            "free": lambda e: model_readout(adapter, tset, ctx, e),
        }
        self.runs = {m: run[m] for m in modes}
        self.counter = counter
        self.clean = {m: self._run(fn, FeatureEdits()) for m, fn in self.runs.items()}

    def _run(self, fn: Callable[[FeatureEdits], Readout], edits: FeatureEdits) -> Readout:
        out = fn(edits)
        self.counter.tick()
        return out

    def changes(self, edits: FeatureEdits) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """By mode: (Δ demeaned logits, Δ probabilities) over the vocabulary."""
        out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for mode, fn in self.runs.items():
            r, c = self._run(fn, edits), self.clean[mode]
            out[mode] = (r.logits - c.logits, r.probs - c.probs)
        return out


class _Effects:
    """Predicted and measured changes of the targets for one edit."""

    def __init__(self, graph: LinkGraph, targets: list[int], predict: LinearPrediction, measure: _Measure) -> None:
        self.graph, self.targets, self.predict, self.measure = graph, targets, predict, measure
        p = graph.prob[targets]
        self.weights = p / p.sum() if p.sum() > 0 else torch.full_like(p, 1 / len(targets))
        self.token_ids = [int(graph.index[t]) for t in targets]

    def of(self, *, pinned: list[int], factor: float, keep: list[int] | None = None) -> Effect:
        """Edit: the `pinned` feature nodes set to factor × their clean activation; with `keep`, every feature
        outside it ablated."""
        fixed = {i: factor - 1.0 for i in pinned}
        if keep is not None:
            kept = set(keep)
            fixed.update({i: -1.0 for i in self.graph.of_kind("feature") if i not in kept and i not in fixed})
        predicted = self.predict.changes(fixed)[self.targets]
        pinned_at = self._coords(pinned)
        edits = FeatureEdits(
            pinned=pinned_at,
            factors=[factor] * len(pinned_at),
            ablate_others=keep is not None,
            keep=self._coords(keep or []),
        )
        measured = self.measure.changes(edits)
        return Effect(
            predicted=self._changes(predicted, None),
            measured={m: self._changes(d[0][self.token_ids], d[1][self.token_ids]) for m, d in measured.items()},
            predicted_effect=self._mean(predicted),
            measured_effect={m: self._mean(d[0][self.token_ids]) for m, d in measured.items()},
        )

    def _coords(self, nodes: list[int]) -> list[tuple[int, int, int]]:
        """(layer, position, index) of feature nodes, as FeatureEdits takes them."""
        return [(layer, pos, idx) for layer, idx, pos in self.graph.feature_coords(nodes)]

    def _changes(self, logits: torch.Tensor, probs: torch.Tensor | None) -> list[TargetChange]:
        return [
            TargetChange(
                node_id=self.graph.ids[t],
                token_id=tok,
                logit=float(logits[k]),
                prob=None if probs is None else float(probs[k]),
            )
            for k, (t, tok) in enumerate(zip(self.targets, self.token_ids, strict=True))
        ]

    def _mean(self, logits: torch.Tensor) -> float:
        return float((self.weights * logits.double()).sum())
