"""What the training step loops share to keep their tensors on the device with no hidden host reads (issue 16):
firing bookkeeping and the dead-feature nudge as fixed-shape masked ops (host -> device copies of cached rows:
`data.activations.to_device`).

A boolean-mask index (`t[mask]`), `.item()`, `bool(t)` or `nonzero()` makes a GPU wait for its queue to drain; the
helpers here give the same numbers with ops whose output shape does not depend on the data."""

from __future__ import annotations

import torch


@torch.no_grad()
def fired_latents(feats: torch.Tensor, active: torch.Tensor, width: int) -> torch.Tensor:
    """[width] bool: which latents fired among (feature, active) pairs of any shape, by a count scattered over a
    fixed-size table (where `feats[active]` would need a host read for its length)."""
    counts = torch.zeros(width, dtype=torch.int32, device=feats.device)
    return counts.index_add_(0, feats.reshape(-1), active.reshape(-1).to(torch.int32)) > 0


@torch.no_grad()
def nudge_dead(b_enc: torch.Tensor, dead: torch.Tensor, amount: float) -> None:
    """`b_enc[dead] += amount` as a masked add: the same numbers (x + 0 is x) without finding the dead ones."""
    b_enc.add_(dead.to(b_enc.dtype) * amount)
