"""The BirdCLEF ``submission.csv`` table: ``row_id`` + one score column per label."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from birdsweep.data.windows import row_id

log = logging.getLogger(__name__)

# the index of a window-score table: recording, window start and end (seconds)
INDEX_NAMES = ("file", "start_time", "end_time")


def row_ids(files: Sequence[str | Path], ends: Sequence[float]) -> list[str]:
    """``<file stem>_<window end second>`` of windows given by their file and end time."""
    return [row_id(Path(f).stem, e) for f, e in zip(files, ends, strict=True)]


def submission_table(scores: pd.DataFrame) -> pd.DataFrame:
    """BirdCLEF ``submission.csv`` layout: ``row_id`` + one column per label.

    Args:
        scores: window scores indexed by ``(file, start_time, end_time)`` (columns in label
            order, as from :meth:`birdsweep.infer.ensemble.Ensemble.predict_files`).

    Returns:
        DataFrame with ``row_id`` = ``<file stem>_<window end second>`` first.
    """
    ids = row_ids(scores.index.get_level_values("file"), scores.index.get_level_values("end_time"))
    out = pd.DataFrame(scores.to_numpy(), columns=list(scores.columns))
    out.insert(0, "row_id", ids)
    dup = out["row_id"].duplicated()
    if dup.any():
        log.warning(
            "%d duplicate row_id(s), e.g. %s: two input files share a name stem",
            int(dup.sum()),
            out.loc[dup, "row_id"].iloc[0],
        )
    return out
