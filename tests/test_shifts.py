"""Test-time shifts: where the shifted windows start, and how their scores combine."""

from __future__ import annotations

import numpy as np
import pytest

from birdsweep.scoring.shifts import TestTimeShifts

SR, WIN = 10, 50  # 10 samples per second, 5 s windows


def test_shifted_starts_stay_inside_the_recording():
    tta = TestTimeShifts([-1.0, 0.0, 1.0])
    assert tta.n == 3 and tta.reach_seconds == 1.0
    assert tta.starts(100, 200, WIN, SR) == [90, 100, 110]  # a window in the middle
    assert tta.starts(0, 200, WIN, SR) == [0, 0, 10]  # the first window cannot move earlier
    assert tta.starts(150, 200, WIN, SR) == [140, 150, 150]  # nor the last one later
    # a zero-padded last window (file of 17 s) only moves towards the start, never later
    assert tta.starts(150, 170, WIN, SR) == [140, 150, 150]
    assert tta.starts(0, 30, WIN, SR) == [0, 0, 0]  # a file shorter than one window


def test_combine_averages_over_shifts_and_checks_their_number():
    tta = TestTimeShifts([-0.5, 0.0, 0.5])
    p = np.random.default_rng(0).random((3, 4, 2)).astype(np.float32)
    out = tta.combine(p)
    assert out.shape == (4, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out, p.mean(0), rtol=1e-6)
    with pytest.raises(ValueError, match="2 shifted predictions for 3 offsets"):
        tta.combine(p[:2])


def test_no_shift_and_bad_shifts():
    once = TestTimeShifts()
    assert once.seconds == (0.0,) and once.n == 1 and once.starts(7, 100, WIN, SR) == [7]
    assert TestTimeShifts([]).seconds == (0.0,)
    with pytest.raises(ValueError, match="finite"):
        TestTimeShifts([0.0, float("nan")])
    with pytest.raises(ValueError, match="under half a window"):
        TestTimeShifts([-2.5, 0.0]).validate(5.0)
    TestTimeShifts([-2.4, 0.0]).validate(5.0)
