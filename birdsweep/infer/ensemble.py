"""Label recordings with an exported ONNX ensemble (onnxruntime, CPU).

Example:
    >>> from birdsweep.infer.ensemble import Ensemble
    >>> ens = Ensemble.load("outputs/ensemble", threads=2)
    >>> scores = ens.predict_files(["soundscape_1.ogg", "soundscape_2.ogg"])  # doctest: +SKIP
    >>> scores.loc["soundscape_1.ogg"].head()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from birdsweep.data.audio import AudioError, TruncatedAudioError, list_audio_files
from birdsweep.export.manifest import check_session, read_manifest
from birdsweep.infer.combine import COMBINE_METHODS, combine
from birdsweep.infer.context import FileMaxContext
from birdsweep.infer.session import INPUT_NAME, OUTPUT_NAME, onnx_session
from birdsweep.infer.shifts import TestTimeShifts
from birdsweep.infer.stream import Chunk, WindowReader

log = logging.getLogger(__name__)

INDEX_NAMES = ("file", "start_time", "end_time")


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

    def scores(self, method: str = "rank", file_max_power: float = 0.0) -> pd.DataFrame:
        """Ensemble scores, one row per window and one column per label.

        Args:
            method: ``rank`` or ``mean`` (see :func:`birdsweep.infer.combine.combine`).
            file_max_power: recording context applied to each model's probabilities before
                they are combined (:class:`birdsweep.infer.context.FileMaxContext`; 0 = none).

        Returns:
            DataFrame indexed by ``(file, start_time, end_time)``; ``attrs["failures"]`` lists
            the files that could not be decoded. Filled windows score 0 and take no part in
            the ranking.
        """
        values = np.zeros((len(self.probs), len(self.labels)), dtype=np.float32)
        ok = self.decoded
        probs = FileMaxContext(file_max_power)(self.probs[ok], self.file_index[ok])
        values[ok] = combine(probs, method)
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


class Ensemble:
    """An exported ensemble folder loaded into onnxruntime CPU sessions.

    Build it with :meth:`load`.

    Args:
        model_dir: the ensemble folder.
        manifest: its manifest.
        sessions: one onnxruntime session per graph of the manifest.
        combine: default combination (``rank`` | ``mean``).
        file_max_power: recording context of submission scores (None = the manifest's).
        shifts: test-time shifts in seconds, probabilities averaged (None = the manifest's;
            ``[0]`` = each window once; see :class:`birdsweep.infer.shifts.TestTimeShifts`).
        batch_size: windows per onnxruntime call (windows of different files share a batch).
        chunk_windows: windows decoded per read of a file (bounds memory on long files).
        prefetch: chunks decoded ahead by a background thread (0 = decode inline).
        fail_windows: rows written for an undecodable file whose header gives no duration.
        min_last_window_seconds: a shorter trailing partial window is dropped.
        progress: show a tqdm bar.
    """

    def __init__(
        self,
        model_dir: str | Path,
        manifest: dict[str, Any],
        sessions: list[Any],
        combine: str | None = None,
        file_max_power: float | None = None,
        shifts: Sequence[float] | None = None,
        batch_size: int = 8,
        chunk_windows: int = 12,
        prefetch: int = 2,
        fail_windows: int = 12,
        min_last_window_seconds: float = 1.0,
        progress: bool = False,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.manifest = manifest
        self.sessions = sessions
        self.combine = combine or manifest.get("combine", "rank")
        self.file_max_power = float(
            (manifest.get("context") or {}).get("file_max_power", 0.0)
            if file_max_power is None
            else file_max_power
        )
        FileMaxContext(self.file_max_power)  # validates it
        if shifts is None:
            shifts = (manifest.get("tta") or {}).get("shifts_seconds") or [0.0]
        self.tta = TestTimeShifts(shifts)
        self.tta.validate(float(manifest["window_seconds"]))
        if self.combine not in COMBINE_METHODS:
            raise ValueError(f"combine: {self.combine!r} is not one of {COMBINE_METHODS}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.prefetch = int(prefetch)
        self.fail_windows = int(fail_windows)
        self.progress = progress
        self.reader = WindowReader(
            int(manifest["sample_rate"]),
            float(manifest["window_seconds"]),
            chunk_windows=chunk_windows,
            min_last_window_seconds=min_last_window_seconds,
            context_seconds=self.tta.reach_seconds if self.tta.n > 1 else 0.0,
        )

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        threads: int | None = None,
        spinning: bool = False,
        **kwargs: Any,
    ) -> Ensemble:
        """Load an ensemble folder written by ``birdsweep export``.

        Args:
            model_dir: the folder holding ``manifest.json`` and the ``.onnx`` files.
            threads: onnxruntime intra-op threads (None = one per core).
            spinning: let idle onnxruntime threads spin-wait between operators (off by default:
                spinning threads take the core the decode thread needs, and on a shared
                2-core machine it measured slower either way).
            **kwargs: other :class:`Ensemble` arguments (``combine``, ``batch_size``, ...).

        Returns:
            The :class:`Ensemble`.
        """
        man = read_manifest(model_dir)
        sessions = []
        for g in man["graphs"]:
            file = Path(model_dir) / g["file"]
            try:
                sess = onnx_session(file, threads, spinning)
            except Exception as exc:  # onnxruntime's own errors are long and raw
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ValueError(f"{file}: not a loadable ONNX model ({first})") from exc
            check_session(sess, g, list(man["labels"]), file)
            sessions.append(sess)
        return cls(model_dir, man, sessions, **kwargs)

    @property
    def labels(self) -> list[str]:
        """Class names in output (taxonomy) order."""
        return list(self.manifest["labels"])

    @property
    def n_models(self) -> int:
        """Number of models in the ensemble."""
        return len(self.manifest["models"])

    @property
    def sample_rate(self) -> int:
        """Sample rate the models expect."""
        return int(self.manifest["sample_rate"])

    @property
    def window_seconds(self) -> float:
        """Window length in seconds."""
        return float(self.manifest["window_seconds"])

    def predict_windows(self, windows: np.ndarray) -> np.ndarray:
        """Per-model probabilities of ready-made windows.

        Args:
            windows: ``[B, window_samples]`` float32 waveforms at :attr:`sample_rate`.

        Returns:
            ``[B, M, C]`` float32 probabilities.
        """
        x = np.ascontiguousarray(windows, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.reader.window_samples:
            raise ValueError(
                f"windows must be [B, {self.reader.window_samples}] (window_seconds × "
                f"sample_rate), got {x.shape}"
            )
        out = np.empty((len(x), self.n_models, len(self.labels)), dtype=np.float32)
        for g, sess in zip(self.manifest["graphs"], self.sessions, strict=True):
            out[:, g["models"], :] = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        return out

    # ----------------------------------------------------------------------- file inference

    def _views(self, chunk: Chunk) -> np.ndarray:
        """``[k, S, window_samples]``: each window of the chunk at every test-time shift."""
        if self.tta.n == 1 or chunk.context is None:
            return chunk.windows[:, None, :]
        win, ctx, c0 = self.reader.window_samples, chunk.context, chunk.context_start
        out = np.zeros((len(chunk.windows), self.tta.n, win), dtype=np.float32)
        for i in range(len(chunk.windows)):
            start = (chunk.first_window + i) * win
            for j, st in enumerate(self.tta.starts(start, c0 + len(ctx), win, self.sample_rate)):
                seg = ctx[st - c0 : st - c0 + win]
                out[i, j, : len(seg)] = seg
        return out

    def _produce(self, paths: Sequence[Path], stop: threading.Event) -> Iterator[Chunk | _Failed]:
        for i, p in enumerate(paths):
            done = 0
            try:
                for chunk in self.reader.iter_windows(p, i):
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

    def _items(self, paths: Sequence[Path]) -> Iterator[Chunk | _Failed]:
        stop = threading.Event()
        if self.prefetch <= 0:
            yield from self._produce(paths, stop)
            return
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)

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
                for item in self._produce(paths, stop):
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

    def run(self, paths: Sequence[str | Path] | str | Path) -> InferenceResult:
        """Decode, window and score files; keep every model's probabilities.

        Windows of consecutive files share onnxruntime batches; decoding runs in a background
        thread (``prefetch``) while the models compute. A file that cannot be decoded is
        logged and its rows filled with 0 (as many as its header duration gives, else
        ``fail_windows``), so a submission keeps every row. A truncated file (decodes shorter
        than its header declares) is scored as far as it decodes and the rest of its rows are
        filled the same way (up to ``fail_windows`` when its length is unknown: a cut Ogg).

        Args:
            paths: audio files, or one folder / file (searched recursively for audio).

        Returns:
            An :class:`InferenceResult`.
        """
        if isinstance(paths, (str, Path)):
            paths = list_audio_files(paths)
        paths = [Path(p) for p in paths]
        expected = [self.reader.header_windows(p) for p in paths]
        m, c, bs, n_shift = self.n_models, len(self.labels), self.batch_size, self.tta.n
        win = self.reader.window_samples
        batch = np.zeros((bs, n_shift, win), dtype=np.float32)
        slots_f = np.zeros(bs, dtype=np.int64)
        slots_w = np.zeros(bs, dtype=np.int64)
        probs, f_idx, w_idx, ok = [], [], [], []
        failures: list[FileFailure] = []
        fill = 0
        bar = tqdm(
            total=sum(e if e is not None else self.fail_windows for e in expected),
            unit="win",
            desc="infer",
            disable=not self.progress,
        )

        def flush() -> None:
            nonlocal fill
            if fill:
                p = self.predict_windows(batch[:fill].reshape(fill * n_shift, win))
                probs.append(self.tta.combine(p.reshape(fill, n_shift, m, c).swapaxes(0, 1)))
                f_idx.append(slots_f[:fill].copy())
                w_idx.append(slots_w[:fill].copy())
                ok.append(np.ones(fill, dtype=bool))
                bar.update(fill)
                fill = 0

        try:
            for item in self._items(paths):
                if isinstance(item, _Failed):
                    want = expected[item.file_index]
                    if item.truncated:  # the header of a cut file may count only what is left
                        d = item.declared_seconds
                        want = None if d is None else self.reader.n_windows_for(d)
                    n = max(
                        0, (want if want is not None else self.fail_windows) - item.windows_decoded
                    )
                    failures.append(
                        FileFailure(
                            str(paths[item.file_index]), item.error, item.windows_decoded, n
                        )
                    )
                    unknown = f", up to fail_windows={self.fail_windows}" if want is None else ""
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
                views = self._views(item)
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
            labels=self.labels,
            window_seconds=self.window_seconds,
            failures=failures,
        )

    def predict_files(
        self,
        paths: Sequence[str | Path] | str | Path,
        combine: str | None = None,
        file_max_power: float | None = None,
    ) -> pd.DataFrame:
        """Ensemble scores of every window of the files.

        Args:
            paths: audio files (ogg/wav/flac/mp3, any rate and channel count), or a folder.
            combine: ``rank`` | ``mean`` (None = the ensemble's default).
            file_max_power: recording context (None = the ensemble's default).

        Returns:
            DataFrame indexed by ``(file, start_time, end_time)`` with one column per label;
            ``attrs["failures"]`` lists undecodable files (their rows hold 0).
        """
        power = self.file_max_power if file_max_power is None else file_max_power
        return self.run(paths).scores(combine or self.combine, power)


def gather_audio_files(audio: str | Path | Sequence[str | Path]) -> list[Path]:
    """The audio files of ``--audio``: files and/or folders (searched recursively), in order.

    Raises:
        FileNotFoundError: no audio file found.
    """
    files: list[Path] = []
    for a in [audio] if isinstance(audio, (str, Path)) else audio:
        files.extend(list_audio_files(a))
    if not files:
        raise FileNotFoundError(f"--audio {audio}: no audio files found")
    return files


@dataclass
class LabelSummary:
    """What :func:`label_files` did.

    Attributes:
        out: the written file.
        n_files: input files.
        n_windows: windows scored (including filled ones).
        n_rows: rows written.
        failures: undecodable files.
        seconds: wall time of decoding, inference and writing.
    """

    out: Path
    n_files: int
    n_windows: int
    n_rows: int
    failures: list[FileFailure]
    seconds: float


def label_files(
    model_dir: str | Path,
    audio: Sequence[str | Path],
    out: str | Path,
    output_format: str = "submission",
    combine: str | None = None,
    threshold: float = 0.5,
    threads: int | None = None,
    file_max_power: float | None = None,
    **kwargs: Any,
) -> LabelSummary:
    """Score audio files or folders with an ensemble and write a submission or detections CSV.

    Args:
        model_dir: ensemble folder from ``birdsweep export``.
        audio: files and/or folders (searched recursively; ogg/wav/flac/mp3...).
        out: CSV to write (atomically).
        output_format: ``submission`` (row_id + label columns) or ``detections``
            (file, start, end, label, score ≥ ``threshold``).
        combine: ``rank`` | ``mean``; None = the manifest's default for a submission and
            ``mean`` for detections (a threshold needs probabilities, not ranks).
        threshold: smallest score listed in detections.
        threads: onnxruntime intra-op threads.
        file_max_power: recording context (:class:`birdsweep.infer.context.FileMaxContext`);
            None = the manifest's for a submission and 0 for detections (their threshold
            needs each window's own probability).
        **kwargs: :class:`Ensemble` options (``batch_size``, ``prefetch``, ``progress``, ...).

    Returns:
        A :class:`LabelSummary`.
    """
    import time

    from birdsweep.infer.output import (
        OUTPUT_FORMATS,
        detections_table,
        submission_table,
        write_table,
    )

    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"--format {output_format!r} is not one of {OUTPUT_FORMATS}")
    files = gather_audio_files(audio)
    ens = Ensemble.load(model_dir, threads=threads, **kwargs)
    t1 = time.perf_counter()
    res = ens.run(files)
    if combine is None:
        combine = ens.combine if output_format == "submission" else "mean"
    if file_max_power is None:
        file_max_power = ens.file_max_power if output_format == "submission" else 0.0
    scores = res.scores(combine, file_max_power)
    table = (
        submission_table(scores)
        if output_format == "submission"
        else detections_table(scores, threshold)
    )
    write_table(table, out)
    return LabelSummary(
        Path(out), len(files), len(scores), len(table), res.failures, time.perf_counter() - t1
    )
