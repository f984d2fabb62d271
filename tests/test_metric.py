import numpy as np
import pandas as pd
import pytest

from birdsweep.evaluate.metric import macro_auc, per_class_auc, score_submission


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
