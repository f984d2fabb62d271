"""Label recordings with an exported ONNX ensemble on the CPU (onnxruntime or OpenVINO).

Example:
    >>> from birdsweep.infer.ensemble import Ensemble
    >>> ens = Ensemble.load("outputs/ensemble", threads=2)
    >>> scores = ens.predict_files(["soundscape_1.ogg", "soundscape_2.ogg"])  # doctest: +SKIP
    >>> scores.loc["soundscape_1.ogg"].head()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from birdsweep.data.audio import list_audio_files
from birdsweep.data.windows import MIN_LAST_WINDOW_SECONDS
from birdsweep.scoring.combine import COMBINE_METHODS
from birdsweep.scoring.context import FileMaxContext
from birdsweep.scoring.files import FileFailure, InferenceResult, score_files
from birdsweep.scoring.manifest import check_session, read_manifest
from birdsweep.scoring.session import RUNTIMES, GraphSession, load_error, open_session
from birdsweep.scoring.shifts import TestTimeShifts
from birdsweep.scoring.stream import WindowReader

log = logging.getLogger(__name__)

__all__ = ["Ensemble", "LabelSummary", "gather_audio_files", "label_files"]


class Ensemble:
    """An exported ensemble folder loaded into CPU sessions of one runtime.

    Build it with :meth:`load`.

    Args:
        model_dir: the ensemble folder.
        manifest: its manifest.
        sessions: one :class:`~birdsweep.scoring.session.GraphSession` per graph of the
            manifest.
        combine: default combination (``rank`` | ``mean``).
        file_max_power: recording context of submission scores (None = the manifest's).
        smooth: weights over neighbouring windows applied to submission scores before the
            recording context (None = the manifest's; ``[]`` = off).
        shifts: test-time shifts in seconds, probabilities averaged (None = the manifest's;
            ``[0]`` = each window once; see :class:`birdsweep.scoring.shifts.TestTimeShifts`).
        batch_size: windows per model call (windows of different files share a batch).
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
        sessions: list[GraphSession],
        combine: str | None = None,
        file_max_power: float | None = None,
        smooth: Sequence[float] | None = None,
        shifts: Sequence[float] | None = None,
        batch_size: int = 8,
        chunk_windows: int = 12,
        prefetch: int = 2,
        fail_windows: int = 12,
        min_last_window_seconds: float = MIN_LAST_WINDOW_SECONDS,
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
        if smooth is None:
            smooth = (manifest.get("context") or {}).get("smooth") or ()
        self.smooth = FileMaxContext(self.file_max_power, tuple(smooth)).smooth  # validated
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
            context_seconds=self.tta.context_seconds,
        )

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        threads: int | None = None,
        spinning: bool = False,
        runtime: str = "onnxruntime",
        **kwargs: Any,
    ) -> Ensemble:
        """Load an ensemble folder written by ``birdsweep export``.

        Args:
            model_dir: the folder holding ``manifest.json`` and the ``.onnx`` files.
            threads: the runtime's intra-op threads (None = one per core).
            spinning: let idle onnxruntime threads spin-wait between operators (off by default:
                spinning threads take the core the decode thread needs, and on a shared
                2-core machine it measured slower either way).
            runtime: ``onnxruntime`` | ``openvino`` (:data:`birdsweep.scoring.session.RUNTIMES`;
                both read the same ``.onnx`` files, and ``birdsweep export`` checks both
                against PyTorch when both are installed).
            **kwargs: other :class:`Ensemble` arguments (``combine``, ``batch_size``, ...).

        Returns:
            The :class:`Ensemble`.
        """
        if runtime not in RUNTIMES:
            raise ValueError(f"--runtime {runtime!r} is not one of {RUNTIMES}")
        man = read_manifest(model_dir)
        sessions = []
        for g in man["graphs"]:
            file = Path(model_dir) / g["file"]
            try:
                sess = open_session(file, runtime, threads, spinning)
            except ImportError:
                raise
            except Exception as exc:  # the runtimes' own errors are long and raw
                raise ValueError(
                    f"{file}: not a loadable ONNX model in {runtime} ({load_error(exc)})"
                ) from exc
            check_session(sess, g, list(man["labels"]), file)
            sessions.append(sess)
        return cls(model_dir, man, sessions, **kwargs)

    @property
    def labels(self) -> list[str]:
        """Class names in output (taxonomy) order."""
        return list(self.manifest["labels"])

    @property
    def runtime(self) -> str:
        """The runtime the graphs run in (``onnxruntime`` | ``openvino``)."""
        return self.sessions[0].runtime

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
            out[:, g["models"], :] = sess(x)
        return out

    def run(self, paths: Sequence[str | Path] | str | Path) -> InferenceResult:
        """Decode, window and score files; keep every model's probabilities.

        Windows of consecutive files share model batches; decoding runs in a background
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
        return score_files(
            paths,
            self.predict_windows,
            self.reader,
            self.tta,
            self.labels,
            self.n_models,
            batch_size=self.batch_size,
            prefetch=self.prefetch,
            fail_windows=self.fail_windows,
            progress=self.progress,
        )

    def predict_files(
        self,
        paths: Sequence[str | Path] | str | Path,
        combine: str | None = None,
        file_max_power: float | None = None,
        smooth: Sequence[float] | None = None,
    ) -> pd.DataFrame:
        """Ensemble scores of every window of the files.

        Args:
            paths: audio files (ogg/wav/flac/mp3, any rate and channel count), or a folder.
            combine: ``rank`` | ``mean`` (None = the ensemble's default).
            file_max_power: recording context (None = the ensemble's default).
            smooth: neighbour smoothing (None = the ensemble's default).

        Returns:
            DataFrame indexed by ``(file, start_time, end_time)`` with one column per label;
            ``attrs["failures"]`` lists undecodable files (their rows hold 0).
        """
        power = self.file_max_power if file_max_power is None else file_max_power
        smooth = self.smooth if smooth is None else smooth
        return self.run(paths).scores(combine or self.combine, power, smooth)


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
    smooth: Sequence[float] | None = None,
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
        threads: the runtime's intra-op threads.
        file_max_power: recording context (:class:`birdsweep.scoring.context.FileMaxContext`);
            None = the manifest's for a submission and 0 for detections (their threshold
            needs each window's own probability).
        smooth: neighbour smoothing of window scores before the recording context; None =
            the manifest's for a submission and none for detections.
        **kwargs: :meth:`Ensemble.load` options (``runtime``, ``batch_size``, ``prefetch``,
            ``progress``, ...).

    Returns:
        A :class:`LabelSummary`.
    """
    import time

    from birdsweep.infer.output import OUTPUT_FORMATS, detections_table, write_table
    from birdsweep.scoring.submission import submission_table

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
    if smooth is None:
        smooth = ens.smooth if output_format == "submission" else ()
    scores = res.scores(combine, file_max_power, smooth)
    table = (
        submission_table(scores)
        if output_format == "submission"
        else detections_table(scores, threshold)
    )
    write_table(table, out)
    return LabelSummary(
        Path(out), len(files), len(scores), len(table), res.failures, time.perf_counter() - t1
    )
