"""Test-time shifts (config group ``tta``): score each window also at small time offsets.

A call cut by a window edge, or a model that reads the middle of its input better than the
edges, gives a window a lower score than the call deserves. Scoring the window again with its
start moved by a fraction of a second each way and averaging the probabilities smooths that
out; the row keeps its window (the offsets stay well under half a window).

A shifted window never starts before its recording nor ends after it, unless the unshifted one
already does (a zero-padded last window is only moved towards the start).

Usage::

    tta = TestTimeShifts(seconds=(-0.625, 0.0, 0.625))
    starts = tta.starts(start, file_samples, window_samples, sample_rate)  # one per shift
    probs = tta.combine(shifted_probs)                                      # [S, N, C] -> [N, C]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TestTimeShifts:
    """Offsets (seconds) at which every window is scored; their probabilities are averaged.

    Args:
        seconds: the offsets; ``(0.0,)`` (or an empty list) scores each window once.
    """

    seconds: Sequence[float] = (0.0,)
    __test__ = False  # a product class whose name starts with "Test": not a pytest test class

    def __post_init__(self) -> None:
        vals = tuple(float(s) for s in (self.seconds or (0.0,)))
        if not all(np.isfinite(vals)):
            raise ValueError(f"tta.seconds (--shifts) must be finite numbers, got {vals!r}")
        object.__setattr__(self, "seconds", vals)

    @property
    def n(self) -> int:
        """Number of scored copies of each window."""
        return len(self.seconds)

    @property
    def reach_seconds(self) -> float:
        """Audio needed on each side of a window (the largest absolute offset)."""
        return max(abs(s) for s in self.seconds)

    @property
    def context_seconds(self) -> float:
        """Audio a window reader keeps on each side of what it reads for these shifts (0 when
        each window is scored once)."""
        return self.reach_seconds if self.n > 1 else 0.0

    def validate(self, window_seconds: float) -> None:
        """Raise ``ValueError`` when an offset reaches half a window (it would score another
        window's audio)."""
        if self.reach_seconds >= 0.5 * window_seconds:
            raise ValueError(
                f"tta.seconds (--shifts): offsets must be under half a window "
                f"({0.5 * window_seconds:g} s), got {list(self.seconds)}"
            )

    def starts(
        self, start: int, file_samples: int, window_samples: int, sample_rate: int
    ) -> list[int]:
        """Start samples of the shifted copies of the window starting at ``start``.

        Args:
            start: the window's start sample in its recording.
            file_samples: the recording's length in samples.
            window_samples: window length in samples.
            sample_rate: samples per second.

        Returns:
            One start per offset, clamped inside the recording.
        """
        hi = max(file_samples - window_samples, start)
        return [int(min(max(start + int(round(s * sample_rate)), 0), hi)) for s in self.seconds]

    def combine(self, probs: np.ndarray) -> np.ndarray:
        """Mean over the shift axis: ``[S, N, ...]`` → ``[N, ...]``."""
        probs = np.asarray(probs)
        if len(probs) != self.n:
            raise ValueError(f"{len(probs)} shifted predictions for {self.n} offsets")
        return probs.mean(axis=0).astype(probs.dtype, copy=False)
