"""Recording context of window scores (conf/postprocess): FileMaxContext."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

from birdsweep.scoring.context import FileMaxContext
from birdsweep.scoring.metric import macro_auc


def test_scales_each_window_by_its_recordings_max_per_class():
    files = ["a", "a", "b", "b"]
    p = np.array([[0.9, 0.1], [0.3, 0.2], [0.2, 0.8], [0.35, 0.4]], dtype=np.float32)
    out = FileMaxContext(1.0)(p, files)
    want = np.array([[0.81, 0.02], [0.27, 0.04], [0.07, 0.64], [0.1225, 0.32]])
    np.testing.assert_allclose(out, want, rtol=1e-6)
    assert out.dtype == np.float32
    # order inside a recording is kept; across recordings a faint window of a recording where
    # the species is clearly present (a: 0.3) now outranks a lone 0.35 in recording b
    assert p[1, 0] < p[3, 0] and out[1, 0] > out[3, 0]
    for f in ("a", "b"):
        idx = [i for i, g in enumerate(files) if g == f]
        np.testing.assert_array_equal(rankdata(out[idx], axis=0), rankdata(p[idx], axis=0))


def test_per_model_scores_and_power():
    rng = np.random.default_rng(0)
    probs = rng.random((12, 3, 5)).astype(np.float32)  # [N, M, C]
    files = np.repeat([7, 8, 9], 4)
    out = FileMaxContext(0.5)(probs, files)
    for m in range(3):  # each model and class on its own
        np.testing.assert_allclose(out[:, m], FileMaxContext(0.5)(probs[:, m], files))
    fmax = probs.reshape(3, 4, 3, 5).max(1).repeat(4, axis=0)
    np.testing.assert_allclose(out, probs * np.sqrt(fmax), rtol=1e-6)
    assert FileMaxContext(0.0)(probs, files) is probs


def test_recovers_a_bout_caller_hidden_by_noise():
    """A species calling through one recording at a faint level, against a noisy recording
    with a few louder false alarms: context lifts the AUC."""
    rng = np.random.default_rng(1)
    files = np.repeat(["calls", "noise"], 12)
    truth = np.r_[np.r_[1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1], np.zeros(12)][:, None]
    p = np.where(truth > 0, 0.45, 0.3) + 0.05 * rng.standard_normal((24, 1))
    p[0] = 0.95  # one clear call in the calling recording
    p[12:] = 0.35 + 0.1 * rng.random((12, 1))  # noisy recording, a few louder false alarms
    p[[14, 19]] = 0.6
    assert macro_auc(truth, FileMaxContext(1.0)(p, files)) > macro_auc(truth, p) + 0.1


def test_bad_power_and_lengths_are_refused():
    with pytest.raises(ValueError, match="postprocess.power"):
        FileMaxContext(-1.0)
    with pytest.raises(ValueError, match="2 recording ids for 3 windows"):
        FileMaxContext(1.0)(np.zeros((3, 2)), ["a", "b"])


def test_smoothing_is_a_weighted_mean_of_neighbours_within_each_recording():
    files = ["a"] * 4 + ["b"] * 2
    p = np.array([[0.0], [1.0], [0.0], [0.0], [1.0], [0.0]])
    out = FileMaxContext(0.0, (0.25, 0.5, 0.25))(p, files)
    # edges renormalised (the missing neighbour's weight dropped); b never sees a's windows
    want = [0.25 / 0.75, 0.5, 0.25, 0.0, 0.5 / 0.75, 0.25 / 0.75]
    np.testing.assert_allclose(out[:, 0], want)
    # smoothing comes first, then the recording max of the smoothed scores
    both = FileMaxContext(1.0, (0.25, 0.5, 0.25))(p, files)
    np.testing.assert_allclose(both[:, 0], np.array(want) * np.repeat([0.5, 0.5 / 0.75], [4, 2]))
    # [N, M, C]: each model and class on its own; a single weight changes nothing
    rng = np.random.default_rng(0)
    probs = rng.random((6, 2, 3)).astype(np.float32)
    out = FileMaxContext(0.0, (1, 2, 1))(probs, files)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, 1, 2], FileMaxContext(0.0, (1, 2, 1))(probs[:, 1, 2], files))
    assert FileMaxContext(0.0, (3.0,))(probs, files) is probs
    assert FileMaxContext(0.0, [0.1, 0.2, 0.4, 0.2, 0.1]).smooth == (0.1, 0.2, 0.4, 0.2, 0.1)


@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.2, -0.1, 0.2), (0.0, 0.0, 0.0)])
def test_bad_smoothing_weights_are_refused(weights):
    with pytest.raises(ValueError, match=r"postprocess.smooth \(--smooth\) must be an odd"):
        FileMaxContext(1.0, weights)
