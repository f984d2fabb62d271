"""The window layout of a recording and the ``row_id`` of each window (BirdCLEF's).

A recording is cut into consecutive windows of ``window_seconds`` (:data:`WINDOW_SECONDS` in
BirdCLEF) from its start: window ``w`` covers ``[w, w + 1) × window_seconds``. A trailing partial
window is scored (zero-padded) when it holds at least ``min_last_window_seconds`` of audio; a
recording shorter than one window always gives one. Each window is one row of a submission,
named ``<file stem>_<window end second>`` (``soundscape_1_5``, ``soundscape_1_10``, ...).

Training's soundscape scores, ``birdsweep infer``, the data set's ground truth and the demo data
all use these definitions (:mod:`birdsweep.scoring` reads and scores the windows).
"""

from __future__ import annotations

import math
import re

WINDOW_SECONDS = 5.0  # the BirdCLEF scoring window: one submission row
MIN_LAST_WINDOW_SECONDS = 1.0  # a shorter trailing partial window is dropped

_ROW_ID = re.compile(r"^(?P<stem>.+)_(?P<end>\d+)$")


def window_samples(window_seconds: float, sample_rate: int) -> int:
    """Samples in one window."""
    return int(round(float(window_seconds) * int(sample_rate)))


def n_windows(
    seconds: float,
    window_seconds: float = WINDOW_SECONDS,
    min_last_window_seconds: float = MIN_LAST_WINDOW_SECONDS,
) -> int:
    """Number of windows a recording of ``seconds`` gives (at least one)."""
    full = int(math.floor(seconds / window_seconds + 1e-9))
    rest = seconds - full * window_seconds
    if rest >= max(min_last_window_seconds, 1e-9) or full == 0:
        full += 1
    return full


def _seconds(x: float) -> str:
    return str(int(round(x))) if abs(x - round(x)) < 1e-6 else f"{x:g}"


def row_id(stem: str, end_seconds: float) -> str:
    """``<stem>_<end second>`` of the window ending at ``end_seconds`` of recording ``stem``
    (the file name without its extension)."""
    return f"{stem}_{_seconds(end_seconds)}"


def parse_row_id(rid: str) -> tuple[str, int] | None:
    """``(stem, end second)`` of a ``row_id``; None when it is not ``<stem>_<whole seconds>``."""
    m = _ROW_ID.match(rid)
    return (m["stem"], int(m["end"])) if m else None


def row_start(end_seconds: int, window_samples: int, sample_rate: int) -> int:
    """Start sample of the window that ends at ``end_seconds`` (a row's window)."""
    return max(0, int(end_seconds) * int(sample_rate) - int(window_samples))
