"""Small helpers shared by the batch transforms (random draws on the tensor's device)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def as_range(value: float | Sequence[float], name: str) -> tuple[float, float]:
    """Read a config value that is either one number or a ``[min, max]`` pair.

    Args:
        value: a number (fixed value) or a two-element sequence.
        name: config key, for the error message.

    Returns:
        ``(low, high)`` with ``low <= high``.
    """
    if isinstance(value, int | float):
        return float(value), float(value)
    values = [float(v) for v in value]
    if len(values) != 2 or values[0] > values[1]:
        raise ValueError(f"{name}: expected a number or [min, max] with min <= max, got {value!r}")
    return values[0], values[1]


def check_p(p: float, name: str) -> float:
    """Validate a probability config value and return it as float."""
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name}: p must lie in [0, 1], got {p!r}")
    return float(p)


def uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    """``n`` float32 draws from U[low, high) on ``device`` (torch RNG, so seeded by the loop)."""
    return low + (high - low) * torch.rand(n, device=device)


def coin(n: int, p: float, device: torch.device) -> torch.Tensor:
    """Bool mask [n]: True where a sample gets the transform (probability ``p`` each)."""
    return torch.rand(n, device=device) < p


def beta(n: int, alpha: float, device: torch.device) -> torch.Tensor:
    """``n`` float32 draws from Beta(alpha, alpha) on ``device``."""
    conc = torch.full((n,), float(alpha), device=device)
    return torch.distributions.Beta(conc, conc).sample()


def expand_like(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample vector [B] so that it broadcasts against ``x`` [B, ...]."""
    return v.view(-1, *([1] * (x.dim() - 1)))


def partner(n: int, device: torch.device) -> torch.Tensor:
    """Random partner index per sample [n], never the sample itself when ``n > 1``.

    A random cyclic order: sample ``order[k]`` is paired with ``order[k - 1]``.
    """
    order = torch.randperm(n, device=device)
    perm = torch.empty_like(order)
    perm[order] = order.roll(1)
    return perm
