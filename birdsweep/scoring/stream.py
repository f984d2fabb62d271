"""Read long recordings as fixed-length windows, a few at a time (bounded memory).

Each chunk of ``chunk_windows`` windows is decoded with ``soundfile`` block reads, down-mixed
and resampled on its own with enough context on both sides that the result equals resampling
the whole file (the polyphase filter never sees a chunk edge).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

from birdsweep.data.audio import AudioError, check_complete, resample
from birdsweep.data.windows import (
    MIN_LAST_WINDOW_SECONDS,
    WINDOW_SECONDS,
    n_windows,
    window_samples,
)
from birdsweep.scoring.shifts import TestTimeShifts

log = logging.getLogger(__name__)


@dataclass
class Chunk:
    """Consecutive windows of one file.

    Attributes:
        file_index: position of the file in the input list.
        first_window: index of the first window in the file.
        windows: ``[k, window_samples]`` float32 (the last window zero-padded).
        context: the chunk's audio with up to ``context_seconds`` more on each side, as far
            as the file goes, not padded (None when the reader keeps no context).
        context_start: sample of the file (at the output rate) where ``context`` starts.
    """

    file_index: int
    first_window: int
    windows: np.ndarray
    context: np.ndarray | None = None
    context_start: int = 0


class WindowReader:
    """Split audio files into ``window_seconds`` windows at ``sample_rate``, streaming (the
    layout of :mod:`birdsweep.data.windows`).

    Args:
        sample_rate: rate the model expects; other rates are resampled (polyphase).
        window_seconds: window length (the scoring unit, 5 s in BirdCLEF).
        chunk_windows: windows decoded per read (memory per file ≈ this × window).
        min_last_window_seconds: a trailing partial window shorter than this is dropped
            (a file shorter than one window always gives one zero-padded window).
        resample_margin_seconds: context decoded on each side of a chunk for resampling.
        context_seconds: audio kept on each side of a chunk in :attr:`Chunk.context` (e.g.
            for test-time shifts; 0 = none).
    """

    def __init__(
        self,
        sample_rate: int,
        window_seconds: float = WINDOW_SECONDS,
        chunk_windows: int = 12,
        min_last_window_seconds: float = MIN_LAST_WINDOW_SECONDS,
        resample_margin_seconds: float = 0.05,
        context_seconds: float = 0.0,
    ) -> None:
        if chunk_windows < 1:
            raise ValueError(f"chunk_windows must be >= 1, got {chunk_windows}")
        self.sample_rate = int(sample_rate)
        self.window_seconds = float(window_seconds)
        self.window_samples = window_samples(self.window_seconds, self.sample_rate)
        self.chunk_windows = int(chunk_windows)
        self.min_last_window_seconds = float(min_last_window_seconds)
        self.resample_margin_seconds = float(resample_margin_seconds)
        if not context_seconds >= 0:
            raise ValueError(f"context_seconds must be >= 0, got {context_seconds}")
        self.context_seconds = float(context_seconds)

    def n_windows_for(self, seconds: float) -> int:
        """Number of windows a recording of ``seconds`` gives."""
        return n_windows(seconds, self.window_seconds, self.min_last_window_seconds)

    def header_windows(self, path: str | Path) -> int | None:
        """Windows expected from the file header (None when the header is unreadable)."""
        try:
            info = sf.info(str(path))
        except Exception:
            return None
        if info.samplerate <= 0 or info.frames <= 0:
            return None
        return self.n_windows_for(info.frames / info.samplerate)

    def iter_windows(self, path: str | Path, file_index: int = 0) -> Iterator[Chunk]:
        """Yield :class:`Chunk` s of the file, in order.

        Raises:
            AudioError: the file cannot be opened or decoding fails part-way (chunks yielded
                before the failure stay valid); :class:`~birdsweep.data.audio.TruncatedAudioError`
                after the last chunk when the file decodes shorter than it declares.
        """
        path = Path(path)
        try:
            f = sf.SoundFile(str(path))
        except Exception as exc:
            raise AudioError(f"{path}: cannot decode ({exc})") from exc
        with f:
            decoded = yield from self._iter(f, path, file_index)
            check_complete(path, decoded / f.samplerate, f)

    def _iter(self, f: sf.SoundFile, path: Path, file_index: int) -> Generator[Chunk, None, int]:
        """The chunks of an open file; returns the number of input samples decoded."""
        sr_in = int(f.samplerate)
        win_in = self.window_seconds * sr_in  # input samples per window (may be fractional)
        g = gcd(sr_in, self.sample_rate)
        step = sr_in // g  # input alignment at which output samples fall on integers
        margin = 0
        if sr_in != self.sample_rate:
            margin = int(math.ceil(self.resample_margin_seconds * sr_in / step)) * step
        ctx_out = int(math.ceil(self.context_seconds * self.sample_rate))
        margin += int(math.ceil(ctx_out * sr_in / self.sample_rate / step)) * step
        buf = np.zeros(0, dtype=np.float32)  # decoded input from `buf_start` on
        buf_start = 0
        eof = False
        w = 0  # next window index
        while True:
            a = int(round(w * win_in))
            b = int(round((w + self.chunk_windows) * win_in))
            need = b + margin - (buf_start + len(buf))
            if need > 0 and not eof:
                try:
                    data = f.read(frames=need, dtype="float32", always_2d=True)
                except Exception as exc:
                    raise AudioError(
                        f"{path}: decoding failed after {buf_start + len(buf)} samples ({exc})"
                    ) from exc
                if len(data) < need:
                    eof = True
                mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
                if not np.isfinite(mono).all():
                    raise AudioError(f"{path}: contains NaN or infinite samples")
                buf = np.concatenate([buf, mono.astype(np.float32, copy=False)])
            end = buf_start + len(buf)  # samples available (all of the file when eof)
            if eof and end == 0:
                raise AudioError(f"{path}: no audio samples (empty or zero-length file)")
            k = self.chunk_windows
            if eof and b >= end:
                k = min(k, self.n_windows_for(end / sr_in) - w)  # the file's remaining windows
                if k <= 0:
                    return end
            lo = max(0, a - margin)
            seg = buf[lo - buf_start : min(b + margin, end) - buf_start]
            out = resample(seg, sr_in, self.sample_rate) if sr_in != self.sample_rate else seg
            skip = (a - lo) * self.sample_rate // sr_in  # where window `w` starts in `out`
            n_out = k * self.window_samples
            windows = np.zeros(n_out, dtype=np.float32)
            m = min(n_out, len(out) - skip)
            windows[:m] = out[skip : skip + m]
            context, c0 = None, 0
            if ctx_out:
                c0 = max(0, skip - ctx_out)
                context = np.ascontiguousarray(out[c0 : skip + n_out + ctx_out], dtype=np.float32)
                c0 += w * self.window_samples - skip
            yield Chunk(file_index, w, windows.reshape(k, self.window_samples), context, c0)
            w += k
            # drop input no longer needed (keep `margin` before the next chunk start)
            keep_from = max(0, int(round(w * win_in)) - margin)
            if keep_from > buf_start:
                buf = buf[keep_from - buf_start :]
                buf_start = keep_from
            if eof and int(round(w * win_in)) >= end:
                return end


def shifted_views(chunk: Chunk, tta: TestTimeShifts, sample_rate: int) -> np.ndarray:
    """``[k, S, window_samples]``: each window of ``chunk`` at every test-time shift.

    A reader made with ``context_seconds >= tta.reach_seconds`` keeps the audio the shifted
    windows need; :meth:`TestTimeShifts.starts` places them inside the recording.
    """
    if tta.n == 1 or chunk.context is None:
        return chunk.windows[:, None, :]
    win = chunk.windows.shape[1]
    ctx, c0 = chunk.context, chunk.context_start
    out = np.zeros((len(chunk.windows), tta.n, win), dtype=np.float32)
    for i in range(len(chunk.windows)):
        start = (chunk.first_window + i) * win
        for j, st in enumerate(tta.starts(start, c0 + len(ctx), win, sample_rate)):
            seg = ctx[st - c0 : st - c0 + win]
            out[i, j, : len(seg)] = seg
    return out
