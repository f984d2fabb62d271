import numpy as np
import pandas as pd
import pytest

from birdsweep.scoring.metric import (
    _rank_macro_auc,
    macro_auc,
    paired_bootstrap_gap,
    per_class_auc,
    score_submission,
)


def test_perfect_and_inverted_scores():
    y = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
    assert macro_auc(y, y.astype(float)) == 1.0
    assert macro_auc(y, 1.0 - y) == 0.0


def test_hand_computed_with_ties():
    # class 0: positives score 0.9 and 0.5, negatives 0.5 and 0.1 -> pairs: (0.9>0.5)=1,
    # (0.9>0.1)=1, (0.5=0.5)=0.5, (0.5>0.1)=1 -> 3.5 / 4
    y = np.array([[1], [1], [0], [0]])
    s = np.array([[0.9], [0.5], [0.5], [0.1]])
    assert macro_auc(y, s) == pytest.approx(0.875)


def test_constant_scores_give_half():
    y = np.array([[1, 0], [0, 1], [0, 0]])
    assert macro_auc(y, np.full((3, 2), 0.3)) == pytest.approx(0.5)


def test_classes_without_positives_are_skipped():
    y = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 1], [1, 0, 0]])
    s = np.array([[0.9, 0.99, 0.1], [0.1, 0.0, 0.2], [0.2, 0.5, 0.8], [0.8, 0.7, 0.3]])
    auc = per_class_auc(y, s)
    assert np.isnan(auc[1])  # no positive in class 1: skipped, whatever its scores
    assert macro_auc(y, s) == pytest.approx(np.mean([1.0, 1.0]))


def test_all_positive_class_skipped_and_nan_when_none_qualifies():
    y = np.ones((3, 1))
    assert np.isnan(macro_auc(y, np.random.rand(3, 1)))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="must be equal"):
        macro_auc(np.zeros((3, 2)), np.zeros((3, 3)))


def test_score_submission_matches_rows_by_id_and_columns_by_name():
    sol = pd.DataFrame({"row_id": ["a_5", "a_10", "b_5"], "x": [1, 0, 0], "y": [0, 1, 1]})
    sub = pd.DataFrame(
        {"row_id": ["b_5", "a_5", "a_10"], "y": [0.9, 0.1, 0.8], "x": [0.1, 0.9, 0.2]}
    )
    assert score_submission(sol, sub) == 1.0
    with pytest.raises(ValueError, match="lacks label"):
        score_submission(sol, sub.drop(columns="x"))
    with pytest.raises(ValueError, match="row_id"):
        score_submission(sol, sub.iloc[:2])


def _windows(seed: int, n_files: int = 10, per_file: int = 12, classes: int = 8):
    """Labels of ``n_files`` recordings of ``per_file`` windows, ~15 % positives."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n_files * per_file, classes)) < 0.15).astype(float)
    groups = [f"sc{i // per_file}" for i in range(len(y))]
    return rng, y, groups


def test_rank_auc_equals_sklearn_with_ties_and_skipped_classes():
    rng, y, _ = _windows(0)
    y[:, 0] = 0  # no positive: skipped
    y[:, 1] = 1  # no negative: skipped
    s = np.round(y + rng.normal(0, 0.8, y.shape), 1)  # rounding makes ties
    assert _rank_macro_auc(y >= 0.5, s) == pytest.approx(macro_auc(y, s), abs=1e-12)


def test_bootstrap_gap_of_a_system_with_itself_is_zero():
    rng, y, groups = _windows(1)
    s = y + rng.normal(0, 1.0, y.shape)
    assert paired_bootstrap_gap(y, s, s, groups, n_resamples=200) == (0.0, 0.0, 0.0)


def test_bootstrap_gap_separates_a_better_system_and_is_antisymmetric():
    rng, y, groups = _windows(2)
    good = y + rng.normal(0, 0.4, y.shape)
    bad = y + rng.normal(0, 1.5, y.shape)
    gap, low, high = paired_bootstrap_gap(y, good, bad, groups, n_resamples=300)
    assert gap == pytest.approx(macro_auc(y, good) - macro_auc(y, bad))
    assert 0 < low < gap < high
    back = paired_bootstrap_gap(y, bad, good, groups, n_resamples=300)
    assert back[0] == pytest.approx(-gap)
    assert back[1] == pytest.approx(-high, abs=0.02) and back[2] == pytest.approx(-low, abs=0.02)


def test_bootstrap_gap_names_what_is_wrong():
    _, y, groups = _windows(3)
    with pytest.raises(ValueError, match="same windows"):
        paired_bootstrap_gap(y, y, y[:-1], groups)
    with pytest.raises(ValueError, match="at least 2 recordings"):
        paired_bootstrap_gap(y, y, y, ["one"] * len(y))
