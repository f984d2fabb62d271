"""Combine per-model window probabilities ``[N, M, C]`` into one score per window and class."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from birdsweep.scoring.context import FileMaxContext

COMBINE_METHODS = ("rank", "mean")


def rank_scale(probs: np.ndarray) -> np.ndarray:
    """Per-column ranks of ``probs [N, ...]`` over the N rows, scaled to 0–1 (ties averaged).

    Args:
        probs: scores with rows first, e.g. ``[N, M, C]``.

    Returns:
        Same shape, float32: 0 for the lowest score of a column, 1 for the highest. With a
        single row there is nothing to rank and the scores are returned unchanged.
    """
    n = len(probs)
    if n < 2:
        return np.asarray(probs, dtype=np.float32)
    r = rankdata(probs, method="average", axis=0)
    return ((r - 1.0) / (n - 1.0)).astype(np.float32)


def combine(probs: np.ndarray, method: str = "rank") -> np.ndarray:
    """Ensemble scores from per-model probabilities.

    Args:
        probs: ``[N, M, C]`` probabilities of M models for N windows.
        method: ``"rank"`` = each model's per-class ranks across all N windows, scaled to 0–1,
            averaged over models (robust to models with different calibration; changes no
            single model's per-class ROC-AUC); ``"mean"`` = mean probability.

    Returns:
        ``[N, C]`` float32 scores.
    """
    probs = np.asarray(probs)
    if probs.ndim != 3:
        raise ValueError(f"expected probabilities [N, M, C], got shape {probs.shape}")
    if method == "mean":
        return probs.mean(axis=1, dtype=np.float64).astype(np.float32)
    if method == "rank":
        return rank_scale(probs).mean(axis=1, dtype=np.float64).astype(np.float32)
    raise ValueError(f"combine: {method!r} is not one of {COMBINE_METHODS}")


def window_scores(
    probs: np.ndarray,
    recordings: Sequence[object],
    method: str = "rank",
    context: FileMaxContext | None = None,
) -> np.ndarray:
    """The score of each window and class: the recording context applied to each model's
    probabilities, then the models combined. Training's soundscape AUC (the folds of a run) and
    the scores ``birdsweep infer`` writes (the models of an ensemble) are both this.

    Args:
        probs: ``[N, M, C]`` probabilities of M models for N windows.
        recordings: ``N`` recording ids (paths, names or indices), one per window.
        method: ``"rank"`` | ``"mean"`` (see :func:`combine`).
        context: recording context (None = each window on its own).

    Returns:
        ``[N, C]`` float32 scores.
    """
    if context is not None:
        probs = context(probs, recordings)
    return combine(probs, method)
