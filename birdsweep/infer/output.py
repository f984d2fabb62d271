"""Turn window scores into a detection table, and write tables (the submission table is
:func:`birdsweep.scoring.submission.submission_table`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from birdsweep.atomic import atomic_write_text

OUTPUT_FORMATS = ("submission", "detections")


def detections_table(scores: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Long table of (window, label) pairs scoring at least ``threshold``.

    Args:
        scores: window scores indexed by ``(file, start_time, end_time)``.
        threshold: smallest score kept.

    Returns:
        DataFrame with columns ``file, start, end, label, score`` sorted by file, start and
        descending score.
    """
    values = scores.to_numpy()
    rows, cols = np.nonzero(values >= threshold)
    idx = scores.index
    out = pd.DataFrame(
        {
            "file": idx.get_level_values("file")[rows],
            "start": idx.get_level_values("start_time")[rows],
            "end": idx.get_level_values("end_time")[rows],
            "label": np.asarray(scores.columns, dtype=object)[cols],
            "score": values[rows, cols],
        }
    )
    return out.sort_values(["file", "start", "score"], ascending=[True, True, False]).reset_index(
        drop=True
    )


def write_table(df: pd.DataFrame, path: str | Path, float_format: str = "%.7g") -> None:
    """Write a CSV atomically (temp file + rename), creating the folder.

    Args:
        df: the table (its index is not written).
        path: destination file.
        float_format: number format (7 significant digits keep float32 scores distinct).
    """
    atomic_write_text(Path(path), df.to_csv(index=False, float_format=float_format))
