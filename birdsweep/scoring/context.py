"""Recording context for window scores (config group ``postprocess``).

A species heard clearly somewhere in a recording is likely to be calling in its faint windows
too (birds and frogs call in bouts), while a one-off false alarm in an otherwise quiet recording
is not. :class:`FileMaxContext` scales each window's probability by the recording's highest
probability for that class, which re-ranks windows *across* recordings — the unit of the macro
ROC-AUC — and leaves the order within a recording unchanged. Optionally each window's
probability is first smoothed with its neighbours in the same recording (``smooth``: weights
over the windows around it, as BirdCLEF 2025's winning inference did with
``[0.1, 0.2, 0.4, 0.2, 0.1]``): a call cut by a window edge or a bout spanning windows then
lifts the windows next to it.

Usage::

    ctx = FileMaxContext(power=1.0, smooth=(0.25, 0.5, 0.25))
    scores = ctx(probs, files)     # probs [N, C] or [N, M, C]; files: recording of each window
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class FileMaxContext:
    """``p × (max of p over the windows of the same recording) ** power``, per class, after
    an optional smoothing of ``p`` over neighbouring windows.

    Args:
        power: weight of the recording's context; 0 = none.
        smooth: odd number of non-negative weights centred on the window (``()`` = off): each
            window's probability becomes the weighted mean of the windows around it in the
            same recording (weights renormalised where the recording starts or ends). Needs
            each recording's windows contiguous and in time order, as every scoring path
            keeps them.
    """

    power: float = 1.0
    smooth: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not np.isfinite(self.power) or self.power < 0:
            raise ValueError(
                f"postprocess.power (--file-max-power) must be a number >= 0, got {self.power!r}"
            )
        w = tuple(float(x) for x in (self.smooth or ()))
        object.__setattr__(self, "smooth", w)  # a list from YAML becomes a tuple
        if w and (len(w) % 2 == 0 or not all(np.isfinite(x) and x >= 0 for x in w) or sum(w) <= 0):
            raise ValueError(
                "postprocess.smooth (--smooth) must be an odd number of weights >= 0 with a "
                f"positive sum, centred on the window, e.g. [0.25, 0.5, 0.25]; got {list(w)}"
            )

    @property
    def is_identity(self) -> bool:
        """True when it leaves every score as it is."""
        return self.power == 0 and len(self.smooth) <= 1

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
        if self.is_identity or len(probs) == 0:
            return probs
        flat = probs.reshape(len(probs), -1)
        keys = pd.Series(list(files)).astype(str).to_numpy()
        if len(self.smooth) > 1:
            flat = _smoothed(flat, keys, np.asarray(self.smooth, dtype=np.float64))
        if self.power > 0:
            file_max = pd.DataFrame(flat).groupby(keys, sort=False).transform("max").to_numpy()
            flat = flat * file_max**self.power
        return flat.reshape(probs.shape).astype(probs.dtype)


def _smoothed(flat: np.ndarray, keys: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of each row with its neighbours among the rows of the same run of
    ``keys`` (weights that fall outside the recording are dropped and the rest renormalised)."""
    half = len(weights) // 2
    out = np.empty(flat.shape, dtype=np.float64)
    bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        seg = flat[a:b].astype(np.float64)
        n = len(seg)
        padded = np.pad(seg, ((half, half), (0, 0)))
        inside = np.pad(np.ones(n), half)
        num = sum(w * padded[k : k + n] for k, w in enumerate(weights))
        den = sum(w * inside[k : k + n] for k, w in enumerate(weights))
        out[a:b] = num / np.maximum(den, 1e-12)[:, None]
    return out
