"""Score every window of a list of audio files with a window model.

:func:`score_files` decodes the files a few windows at a time (:class:`WindowReader`), cuts each
window at every test-time shift (:func:`shifted_views`), scores them in batches with any
``predict`` function (an ONNX ensemble in ``birdsweep infer``, a fold's PyTorch model for
training's soundscape scores) and averages the shifts. :meth:`InferenceResult.scores` then
applies the recording context and combines the models (:func:`window_scores`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from birdsweep.data.audio import AudioError, TruncatedAudioError
from birdsweep.scoring.combine import window_scores
from birdsweep.scoring.context import FileMaxContext
from birdsweep.scoring.shifts import TestTimeShifts
from birdsweep.scoring.stream import Chunk, WindowReader, shifted_views
from birdsweep.scoring.submission import INDEX_NAMES, row_ids

log = logging.getLogger(__name__)

# ``[B, window_samples]`` float32 windows -> ``[B, M, C]`` float32 probabilities of M models
WindowPredictor = Callable[[np.ndarray], np.ndarray]


@dataclass
class FileFailure:
    """A file that could not be (fully) decoded.

    Attributes:
        file: the path.
        error: why.
        windows_decoded: windows scored before the failure (for a truncated file: those its
            decodable part gives).
        windows_filled: windows added with score 0 so every expected row exists.
    """

    file: str
    error: str
    windows_decoded: int
    windows_filled: int


@dataclass
class InferenceResult:
    """Per-model probabilities of every window of a list of files.

    Attributes:
        files: the input files, in order.
        file_index: ``[N]`` position in ``files`` of each window.
        window_index: ``[N]`` window number within its file.
        probs: ``[N, M, C]`` probabilities of each model (0 for filled windows).
        decoded: ``[N]`` False for windows filled in for an undecodable file.
        labels: class names (C).
        window_seconds: window length.
        failures: files that could not be (fully) decoded.
    """

    files: list[str]
    file_index: np.ndarray
    window_index: np.ndarray
    probs: np.ndarray
    decoded: np.ndarray
    labels: list[str]
    window_seconds: float
    failures: list[FileFailure] = field(default_factory=list)

    def index(self) -> pd.MultiIndex:
        """``(file, start_time, end_time)`` of every window (seconds)."""
        start = self.window_index * self.window_seconds
        return pd.MultiIndex.from_arrays(
            [
                np.asarray(self.files, dtype=object)[self.file_index],
                start,
                start + self.window_seconds,
            ],
            names=list(INDEX_NAMES),
        )

    def row_ids(self) -> list[str]:
        """The submission ``row_id`` of every window."""
        idx = self.index()
        return row_ids(idx.get_level_values("file"), idx.get_level_values("end_time"))

    def scores(
        self, method: str = "rank", file_max_power: float = 0.0, smooth: Sequence[float] = ()
    ) -> pd.DataFrame:
        """Ensemble scores, one row per window and one column per label.

        Args:
            method: ``rank`` or ``mean`` (see :func:`birdsweep.scoring.combine.combine`).
            file_max_power: recording context applied to each model's probabilities before
                they are combined (:class:`birdsweep.scoring.context.FileMaxContext`; 0 = none).
            smooth: weights over neighbouring windows applied first (``()`` = none).

        Returns:
            DataFrame indexed by ``(file, start_time, end_time)``; ``attrs["failures"]`` lists
            the files that could not be decoded. Filled windows score 0 and take no part in
            the ranking.
        """
        values = np.zeros((len(self.probs), len(self.labels)), dtype=np.float32)
        ok = self.decoded
        context = FileMaxContext(file_max_power, tuple(smooth))
        values[ok] = window_scores(self.probs[ok], self.file_index[ok], method, context)
        df = pd.DataFrame(values, index=self.index(), columns=self.labels)
        df.attrs["failures"] = [f.__dict__ for f in self.failures]
        return df


@dataclass
class _Failed:
    file_index: int
    windows_decoded: int
    error: str
    truncated: bool = False
    declared_seconds: float | None = None  # of a truncated file (None: unknown)


_DONE = object()


def _produce(
    reader: WindowReader, paths: Sequence[Path], stop: threading.Event
) -> Iterator[Chunk | _Failed]:
    for i, p in enumerate(paths):
        done = 0
        try:
            for chunk in reader.iter_windows(p, i):
                if stop.is_set():
                    return
                done += len(chunk.windows)
                yield chunk
        except TruncatedAudioError as exc:
            yield _Failed(i, done, str(exc), True, exc.declared_seconds)
        except AudioError as exc:
            yield _Failed(i, done, str(exc))
        except Exception as exc:  # any decoder crash must not sink the whole job
            yield _Failed(i, done, f"{p}: {type(exc).__name__}: {exc}")


def _items(reader: WindowReader, paths: Sequence[Path], prefetch: int) -> Iterator[Chunk | _Failed]:
    """The chunks (and failures) of ``paths`` in order, decoded ``prefetch`` chunks ahead by a
    background thread (0 = inline)."""
    stop = threading.Event()
    if prefetch <= 0:
        yield from _produce(reader, paths, stop)
        return
    q: queue.Queue = queue.Queue(maxsize=prefetch)

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in _produce(reader, paths, stop):
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer and raised there
            put(exc)
            return
        put(_DONE)

    t = threading.Thread(target=work, name="birdsweep-decode", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join()


def score_files(
    paths: Sequence[str | Path],
    predict: WindowPredictor,
    reader: WindowReader,
    tta: TestTimeShifts,
    labels: Sequence[str],
    n_models: int,
    *,
    batch_size: int = 8,
    prefetch: int = 2,
    fail_windows: int = 12,
    progress: bool = False,
    desc: str = "infer",
) -> InferenceResult:
    """Decode, window and score files; keep every model's probabilities.

    Windows of consecutive files share ``predict`` batches; decoding runs in a background
    thread (``prefetch``) while the models compute. Each window is scored at every shift of
    ``tta`` and the probabilities averaged (:meth:`TestTimeShifts.combine`). A file that cannot
    be decoded is logged and its rows filled with 0 (as many as its header duration gives, else
    ``fail_windows``), so a submission keeps every row. A truncated file (decodes shorter than
    its header declares) is scored as far as it decodes and the rest of its rows are filled the
    same way (up to ``fail_windows`` when its length is unknown: a cut Ogg).

    Args:
        paths: audio files.
        predict: ``[B, window_samples]`` windows → ``[B, n_models, len(labels)]``
            probabilities.
        reader: cuts the files into windows; it keeps ``tta.context_seconds`` of audio around
            what it reads.
        tta: test-time shifts.
        labels: class names (the last axis of ``predict``'s output).
        n_models: models scored by ``predict``.
        batch_size: windows per ``predict`` call (times the number of shifts).
        prefetch: chunks decoded ahead by a background thread (0 = decode inline).
        fail_windows: rows written for an undecodable file whose header gives no duration.
        progress: show a tqdm bar.
        desc: the bar's label.

    Returns:
        An :class:`InferenceResult`, windows in file order.
    """
    if reader.context_seconds < tta.context_seconds:
        raise ValueError(
            f"the window reader keeps {reader.context_seconds:g} s around each chunk; the "
            f"test-time shifts need {tta.context_seconds:g} s"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    paths = [Path(p) for p in paths]
    expected = [reader.header_windows(p) for p in paths]
    m, c, bs, n_shift = int(n_models), len(labels), int(batch_size), tta.n
    win = reader.window_samples
    batch = np.zeros((bs, n_shift, win), dtype=np.float32)
    slots_f = np.zeros(bs, dtype=np.int64)
    slots_w = np.zeros(bs, dtype=np.int64)
    probs, f_idx, w_idx, ok = [], [], [], []
    failures: list[FileFailure] = []
    fill = 0
    bar = tqdm(
        total=sum(e if e is not None else fail_windows for e in expected),
        unit="win",
        desc=desc,
        disable=not progress,
    )

    def flush() -> None:
        nonlocal fill
        if fill:
            p = predict(batch[:fill].reshape(fill * n_shift, win))
            probs.append(tta.combine(p.reshape(fill, n_shift, m, c).swapaxes(0, 1)))
            f_idx.append(slots_f[:fill].copy())
            w_idx.append(slots_w[:fill].copy())
            ok.append(np.ones(fill, dtype=bool))
            bar.update(fill)
            fill = 0

    try:
        for item in _items(reader, paths, prefetch):
            if isinstance(item, _Failed):
                want = expected[item.file_index]
                if item.truncated:  # the header of a cut file may count only what is left
                    d = item.declared_seconds
                    want = None if d is None else reader.n_windows_for(d)
                n = max(0, (want if want is not None else fail_windows) - item.windows_decoded)
                failures.append(
                    FileFailure(str(paths[item.file_index]), item.error, item.windows_decoded, n)
                )
                unknown = f", up to fail_windows={fail_windows}" if want is None else ""
                log.warning(
                    "%s (%d window(s) decoded, %d filled with 0%s)",
                    item.error,
                    item.windows_decoded,
                    n,
                    unknown,
                )
                probs.append(np.zeros((n, m, c), dtype=np.float32))
                f_idx.append(np.full(n, item.file_index, dtype=np.int64))
                w_idx.append(np.arange(item.windows_decoded, item.windows_decoded + n))
                ok.append(np.zeros(n, dtype=bool))
                bar.update(n)
                continue
            views = shifted_views(item, tta, reader.sample_rate)
            k, pos = len(views), 0
            while pos < k:
                take = min(bs - fill, k - pos)
                batch[fill : fill + take] = views[pos : pos + take]
                slots_f[fill : fill + take] = item.file_index
                slots_w[fill : fill + take] = np.arange(
                    item.first_window + pos, item.first_window + pos + take
                )
                fill += take
                pos += take
                if fill == bs:
                    flush()
        flush()
    finally:
        bar.close()
    if failures:
        log.warning("%d of %d file(s) could not be decoded fully", len(failures), len(paths))
    all_p = np.concatenate(probs) if probs else np.zeros((0, m, c), dtype=np.float32)
    fi = np.concatenate(f_idx) if f_idx else np.zeros(0, dtype=np.int64)
    wi = np.concatenate(w_idx) if w_idx else np.zeros(0, dtype=np.int64)
    dec = np.concatenate(ok) if ok else np.zeros(0, dtype=bool)
    order = np.lexsort((wi, fi))  # failure fills may arrive before batched windows
    return InferenceResult(
        files=[str(f) for f in paths],
        file_index=fi[order],
        window_index=wi[order],
        probs=all_p[order],
        decoded=dec[order],
        labels=list(labels),
        window_seconds=reader.window_seconds,
        failures=failures,
    )
