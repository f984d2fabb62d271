"""Seeded, stratified K-fold split of training clips by primary label."""

from __future__ import annotations

import logging

import numpy as np
from sklearn.model_selection import StratifiedKFold

log = logging.getLogger(__name__)

ALWAYS_TRAIN = -1


def assign_folds(primary: np.ndarray, n_folds: int, seed: int = 0) -> np.ndarray:
    """Give each clip a fold id, stratified by its primary label.

    Classes with fewer clips than ``n_folds`` cannot appear in every validation fold; their
    clips get fold ``-1`` (:data:`ALWAYS_TRAIN`): they are in the training set of every fold
    and never validated, so the model still learns them and the metric skips them (no
    positives in any held-out fold).

    Args:
        primary: primary label index per clip.
        n_folds: K (≥ 2).
        seed: shuffling seed.

    Returns:
        int array of fold ids in ``[-1, n_folds)``.
    """
    if n_folds < 2:
        raise ValueError(f"data.n_folds must be >= 2, got {n_folds}")
    primary = np.asarray(primary)
    labels, counts = np.unique(primary, return_counts=True)
    rare = set(labels[counts < n_folds].tolist())
    folds = np.full(len(primary), ALWAYS_TRAIN, dtype=int)
    keep = np.array([p not in rare for p in primary])
    if keep.sum() < n_folds:
        raise ValueError(
            f"data.n_folds={n_folds}: no class has {n_folds} or more clips, so no fold can be "
            "validated; lower data.n_folds or add clips"
        )
    if rare:
        log.info(
            "%d class(es) with fewer than %d clips are kept in training for every fold "
            "and not validated",
            len(rare),
            n_folds,
        )
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    idx = np.flatnonzero(keep)
    for k, (_, val) in enumerate(skf.split(idx, primary[idx])):
        folds[idx[val]] = k
    return folds
