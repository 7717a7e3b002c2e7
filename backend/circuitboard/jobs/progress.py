"""One number for a job's progress: the phases of a trace weighted by their typical share of its time, so the
page's bar only moves forward (100% of "features" is not 100% of the job) and an ETA can be read off it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from circuitboard.engine.types import ProgressEvent
from circuitboard.store.records import JobKind

# Typical shares of a trace's wall time (the engine's phases, in order). The feature rows (one backward pass per
# batch of 64 features) dominate; the forward pass and the logit rows are about one batch each; pruning and the
# JSON export are a few percent at the default 2000 features.
PHASE_SHARES: dict[str, float] = {"forward": 0.04, "logits": 0.04, "features": 0.82, "prune": 0.05, "export": 0.05}
# Phases that are a whole job of their own: done / total is the job's fraction (a validation's interventions, an
# atlas build's corpus tokens through all its layers).
WHOLE_JOB_PHASES = frozenset({"validate", "atlas"})
_MIN_FRACTION_FOR_ETA = 0.02  # before this, elapsed / fraction is mostly noise
_MAX_RUNNING_FRACTION = 0.99  # a job is through only once its graph is stored


def overall_fraction(phase: str | None, done: int, total: int) -> float:
    """0..1 through the whole trace at (phase, done of total); unknown phases count as the start."""
    if phase in WHOLE_JOB_PHASES:
        return min(done / total, 1.0) if total > 0 else 0.0
    if phase not in PHASE_SHARES:
        return 1.0 if phase == "done" else 0.0
    before = 0.0
    for name, share in PHASE_SHARES.items():
        if name == phase:
            within = min(done / total, 1.0) if total > 0 else 0.0
            return min(before + share * within, 1.0)
        before += share
    raise AssertionError("unreachable")


def stored_fraction(status: str, phase: str | None, done: int, total: int) -> float:
    """The fraction of a job from its database record (no live progress in this process)."""
    if status == "done":
        return 1.0
    if status == "queued":
        return 0.0
    fraction = overall_fraction(phase, done, total)
    return min(fraction, _MAX_RUNNING_FRACTION) if status == "running" else fraction


def eta_seconds(elapsed: float, fraction: float) -> float | None:
    """Seconds left at this pace, or None while too little is done to tell."""
    if fraction >= 1.0:
        return 0.0
    if fraction < _MIN_FRACTION_FOR_ETA:
        return None
    return elapsed * (1.0 - fraction) / fraction


@dataclass
class LiveProgress:
    """The running job's latest event, and its fraction: the largest so far, so it never goes back."""

    started: float = field(default_factory=time.monotonic)
    kind: JobKind = "graph"
    event: ProgressEvent | None = None
    fraction: float = 0.0

    def update(self, event: ProgressEvent) -> None:
        self.event = event
        now = min(overall_fraction(event.phase, event.done, event.total), _MAX_RUNNING_FRACTION)
        self.fraction = max(self.fraction, now)

    @property
    def eta_s(self) -> float | None:
        return eta_seconds(time.monotonic() - self.started, self.fraction)
