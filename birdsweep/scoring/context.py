"""Recording context for window scores (config group ``postprocess``).

A species heard clearly somewhere in a recording is likely to be calling in its faint windows
too (birds and frogs call in bouts), while a one-off false alarm in an otherwise quiet recording
is not. :class:`FileMaxContext` scales each window's probability by the recording's highest
probability for that class, which re-ranks windows *across* recordings — the unit of the macro
ROC-AUC — and leaves the order within a recording unchanged.

Usage::

    ctx = FileMaxContext(power=1.0)
    scores = ctx(probs, files)     # probs [N, C] or [N, M, C]; files: recording of each window
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class FileMaxContext:
    """``p × (max of p over the windows of the same recording) ** power``, per class.

    Args:
        power: weight of the recording's context; 0 returns the scores unchanged.
    """

    power: float = 1.0

    def __post_init__(self) -> None:
        if not np.isfinite(self.power) or self.power < 0:
            raise ValueError(
                f"postprocess.power (--file-max-power) must be a number >= 0, got {self.power!r}"
            )

    def __call__(self, probs: np.ndarray, files: Sequence[object]) -> np.ndarray:
        """Scores with recording context.

        Args:
            probs: ``[N, ...]`` probabilities in 0–1 (e.g. ``[N, C]`` or ``[N, M, C]``).
            files: ``N`` recording ids (paths or names), one per window.

        Returns:
            Same shape and dtype as ``probs``.
        """
        probs = np.asarray(probs)
        if len(files) != len(probs):
            raise ValueError(f"{len(files)} recording ids for {len(probs)} windows")
        if self.power == 0 or len(probs) == 0:
            return probs
        flat = probs.reshape(len(probs), -1)
        keys = pd.Series(list(files)).astype(str).to_numpy()
        file_max = pd.DataFrame(flat).groupby(keys, sort=False).transform("max").to_numpy()
        return (flat * file_max**self.power).reshape(probs.shape).astype(probs.dtype)
