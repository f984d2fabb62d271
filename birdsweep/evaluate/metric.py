"""The BirdCLEF 2025 score: macro ROC-AUC over classes with at least one positive."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score


def per_class_auc(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """ROC-AUC of each class (column); NaN where a class has no positive or no negative.

    Args:
        y_true: ``[N, C]`` binary (or soft ≥ 0.5 = positive) labels.
        y_score: ``[N, C]`` scores; ties count half, constant scores give 0.5.

    Returns:
        ``[C]`` float array.
    """
    y_true = np.asarray(y_true) >= 0.5
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ValueError(f"labels {y_true.shape} and scores {y_score.shape} must be equal [N, C]")
    out = np.full(y_true.shape[1], np.nan)
    for c in range(y_true.shape[1]):
        pos = y_true[:, c].sum()
        if 0 < pos < len(y_true):
            out[c] = roc_auc_score(y_true[:, c], y_score[:, c])
    return out


def macro_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Macro ROC-AUC over the classes that have at least one positive label (BirdCLEF 2025).

    A class with positives in every row has no negatives; it is skipped too (AUC undefined).
    Returns NaN when no class qualifies.
    """
    auc = per_class_auc(y_true, y_score)
    return float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan")


def score_submission(solution: pd.DataFrame, submission: pd.DataFrame) -> float:
    """Score a ``submission.csv`` table against a ground-truth table of the same shape.

    Both have ``row_id`` plus one column per label; rows are matched by ``row_id`` and
    columns by name (the solution's columns decide which labels count).
    """
    labels: Sequence[str] = [c for c in solution.columns if c != "row_id"]
    missing = [c for c in labels if c not in submission.columns]
    if missing:
        raise ValueError(f"submission lacks label column(s) {missing[:5]} ({len(missing)} in all)")
    sub = submission.set_index("row_id")
    absent = set(solution["row_id"]) - set(sub.index)
    if absent:
        raise ValueError(f"submission lacks {len(absent)} row_id(s), e.g. {sorted(absent)[:3]}")
    sub = sub.loc[solution["row_id"], labels]
    return macro_auc(solution[labels].to_numpy(), sub.to_numpy())
