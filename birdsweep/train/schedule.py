"""Learning-rate schedules built from config (``conf/scheduler``)."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR


def cosine_with_warmup(
    optimizer: Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.05,
    warmup_start_factor: float = 0.01,
    min_lr_ratio: float = 0.01,
) -> LRScheduler:
    """Linear warm-up then cosine decay, stepped once per optimiser step.

    Args:
        optimizer: the optimiser.
        total_steps: optimiser steps of the whole fold.
        warmup_fraction: share of ``total_steps`` spent warming up.
        warmup_start_factor: lr multiplier at step 0.
        min_lr_ratio: final lr as a fraction of the base lr.

    Returns:
        A per-step scheduler.
    """
    if not 0 <= warmup_fraction < 1:
        raise ValueError(f"scheduler.warmup_fraction must be in [0, 1), got {warmup_fraction}")
    warmup = max(1, int(round(total_steps * warmup_fraction)))
    group = optimizer.param_groups[0]
    base = group.get("initial_lr", group["lr"])  # a rebuilt schedule keeps the first base lr
    cosine = CosineAnnealingLR(
        optimizer, T_max=max(1, total_steps - warmup), eta_min=base * min_lr_ratio
    )
    ramp = LinearLR(optimizer, start_factor=warmup_start_factor, total_iters=warmup)
    return SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])


def constant(optimizer: Optimizer, total_steps: int) -> LRScheduler:
    """Constant learning rate (``total_steps`` is ignored)."""
    return LinearLR(optimizer, start_factor=1.0, total_iters=1)
