"""Training samplers (config group ``sampler``).

The loop builds one per fold::

    sampler = instantiate(cfg.sampler, primary=..., secondary=..., num_classes=C, num_samples=N)

and gets a ``torch.utils.data.Sampler`` or ``None`` (plain shuffling).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

log = logging.getLogger(__name__)


def random_sampler(**_: Any) -> None:
    """Plain shuffling: returns ``None`` so the DataLoader shuffles (``sampler: random``).

    Returns:
        None.
    """
    return None


def label_counts(
    primary: Sequence[int],
    secondary: Sequence[Sequence[int]],
    num_classes: int,
    secondary_weight: float = 0.5,
) -> np.ndarray:
    """Per-class label count: 1 per primary label, ``secondary_weight`` per secondary label.

    Args:
        primary: primary class index per clip.
        secondary: secondary class indices per clip.
        num_classes: number of classes C.
        secondary_weight: how much a secondary label counts.

    Returns:
        float64 counts [C].
    """
    if len(secondary) != len(primary):
        raise ValueError(
            f"sampler: {len(primary)} primary labels but {len(secondary)} secondary lists"
        )
    counts = np.bincount(np.asarray(primary, dtype=np.int64), minlength=num_classes).astype(float)
    if secondary_weight > 0:
        sec = [int(c) for row in secondary for c in row]
        if sec:
            counts += secondary_weight * np.bincount(np.asarray(sec), minlength=num_classes)
    if counts.size != num_classes:
        raise ValueError(f"sampler: a label index is >= num_classes={num_classes}")
    return counts


def balanced_weights(
    primary: Sequence[int],
    secondary: Sequence[Sequence[int]],
    num_classes: int,
    alpha: float = 0.5,
    secondary_weight: float = 0.5,
) -> np.ndarray:
    """Sampling weight per clip: mean over its labels of ``count(label) ** -alpha``.

    Args:
        primary: primary class index per clip.
        secondary: secondary class indices per clip (counted when ``secondary_weight > 0``).
        num_classes: number of classes C.
        alpha: 0 samples clips uniformly, 1 samples classes (about) uniformly.
        secondary_weight: weight of a secondary label in the class counts.

    Returns:
        float64 weights [len(primary)], normalised to mean 1.
    """
    prim = np.asarray(primary, dtype=np.int64)
    if prim.size and (prim.min() < 0 or prim.max() >= num_classes):
        raise ValueError(f"sampler: primary label index outside [0, {num_classes})")
    counts = label_counts(prim, secondary, num_classes, secondary_weight)
    inv = np.zeros(num_classes)
    inv[counts > 0] = counts[counts > 0] ** -float(alpha)
    weights = np.empty(prim.size)
    for i, (p, sec) in enumerate(zip(prim, secondary, strict=True)):
        labels = {int(p)}
        if secondary_weight > 0:
            labels.update(int(c) for c in sec)
        weights[i] = inv[list(labels)].mean()
    return weights / weights.mean() if weights.size else weights


def balanced_sampler(
    primary: Sequence[int],
    secondary: Sequence[Sequence[int]],
    num_classes: int,
    num_samples: int,
    alpha: float = 0.5,
    secondary_weight: float = 0.5,
    seed: int | None = None,
) -> WeightedRandomSampler:
    """Class-balanced sampling with replacement (``sampler: balanced``).

    Args:
        primary: primary class index per clip (dataset order).
        secondary: secondary class indices per clip.
        num_classes: number of classes C.
        num_samples: draws per epoch (usually ``len(dataset)``).
        alpha: balancing strength, 0 (uniform over clips) to 1 (uniform over classes).
        secondary_weight: weight of a secondary label in the class counts.
        seed: seed of the sampler's own generator; ``None`` uses torch's global RNG (seeded by
            the loop).

    Returns:
        A ``WeightedRandomSampler`` over the clips.
    """
    if not 0.0 <= alpha <= 1.0:
        log.warning("sampler.alpha=%s lies outside [0, 1]; over/under-balancing", alpha)
    weights = balanced_weights(primary, secondary, num_classes, alpha, secondary_weight)
    generator = None if seed is None else torch.Generator().manual_seed(int(seed))
    return WeightedRandomSampler(
        torch.as_tensor(weights, dtype=torch.double),
        num_samples=int(num_samples),
        replacement=True,
        generator=generator,
    )
