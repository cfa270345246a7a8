"""Learning-rate schedules beyond torch's own classes, built from config (``_partial_``)."""
from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR


def warmup_cosine(optimizer: Optimizer, warmup_epochs: int, max_epochs: int,
                  start_factor: float = 0.1, eta_min: float = 0.0) -> SequentialLR:
    """A linear warmup from ``start_factor * lr`` to ``lr`` over ``warmup_epochs`` steps, then
    cosine annealing to ``eta_min`` by step ``max_epochs``; one step an epoch. A run no longer
    than its warmup only warms up."""
    if warmup_epochs < 1:
        raise ValueError(f"warmup_epochs must be at least 1 (scheduler=cosine has none), "
                         f"got {warmup_epochs}")
    warmup = LinearLR(optimizer, start_factor=start_factor, total_iters=warmup_epochs)
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, max_epochs - warmup_epochs),
                               eta_min=eta_min)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_epochs])
