"""Turn window scores into a BirdCLEF submission or a detection table, and write them."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from birdsweep.atomic import atomic_write_text

log = logging.getLogger(__name__)

OUTPUT_FORMATS = ("submission", "detections")


def _seconds(x: float) -> str:
    return str(int(round(x))) if abs(x - round(x)) < 1e-6 else f"{x:g}"


def submission_table(scores: pd.DataFrame) -> pd.DataFrame:
    """BirdCLEF ``submission.csv`` layout: ``row_id`` + one column per label.

    Args:
        scores: window scores indexed by ``(file, start_time, end_time)`` (columns in label
            order, as from :meth:`birdsweep.infer.ensemble.Ensemble.predict_files`).

    Returns:
        DataFrame with ``row_id`` = ``<file stem>_<window end second>`` first.
    """
    files = scores.index.get_level_values("file")
    ends = scores.index.get_level_values("end_time")
    row_id = [f"{Path(f).stem}_{_seconds(e)}" for f, e in zip(files, ends, strict=True)]
    out = pd.DataFrame(scores.to_numpy(), columns=list(scores.columns))
    out.insert(0, "row_id", row_id)
    dup = out["row_id"].duplicated()
    if dup.any():
        log.warning(
            "%d duplicate row_id(s), e.g. %s: two input files share a name stem",
            int(dup.sum()),
            out.loc[dup, "row_id"].iloc[0],
        )
    return out


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
