"""Training's soundscape scores: each fold scored the way ``birdsweep infer`` scores an ensemble.

A fold's model scores every window of the labelled soundscapes' recordings through
:func:`birdsweep.scoring.files.score_files` (the same reader, float32 decoding, window layout and
test-time shifts as ``birdsweep infer``); the folds are then combined over all those windows by
:func:`birdsweep.scoring.combine.window_scores` (recording context, then the mean or ranks over
folds), and the labelled rows are picked by ``row_id``. So the soundscape AUC a run logs is the
AUC of the ``submission.csv`` that ``birdsweep infer`` writes from an export of its folds with the
same settings (``tests/test_scoring_parity.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from birdsweep.atomic import atomic_write_bytes
from birdsweep.config import build
from birdsweep.data.prepare import SoundscapeSet
from birdsweep.scoring.combine import window_scores
from birdsweep.scoring.context import FileMaxContext
from birdsweep.scoring.files import score_files
from birdsweep.scoring.shifts import TestTimeShifts
from birdsweep.scoring.stream import WindowReader
from birdsweep.train.loop import window_predictor

# a fold's probabilities of every soundscape window, next to its checkpoint
SOUNDSCAPE_PROBS = "soundscape_probs.npz"


@dataclass
class SoundscapeProbs:
    """One fold's probabilities of every window of the labelled soundscapes' recordings.

    Attributes:
        row_ids: ``[N]`` submission ``row_id`` of each window.
        recording: ``[N]`` recording (position in the file list) of each window.
        probs: ``[N, C]`` probabilities, averaged over the test-time shifts.
    """

    row_ids: np.ndarray
    recording: np.ndarray
    probs: np.ndarray

    def save(self, path: Path) -> None:
        """Write to ``path`` (``.npz``, atomically)."""
        arrays = {"row_ids": self.row_ids.astype(str), "recording": self.recording}
        atomic_write_bytes(path, lambda f: np.savez(f, probs=self.probs, **arrays))

    @classmethod
    def load(cls, path: Path) -> SoundscapeProbs:
        """Read what :meth:`save` wrote."""
        with np.load(path, allow_pickle=False) as z:
            return cls(z["row_ids"], z["recording"], z["probs"])


def shifts_of(cfg: DictConfig) -> TestTimeShifts:
    """The run's test-time shifts (``tta``; none when the config has no such group)."""
    return build(cfg.tta) if cfg.get("tta") else TestTimeShifts()


def context_of(cfg: DictConfig) -> FileMaxContext:
    """The run's recording context (``postprocess``; none when the config has no such group)."""
    return build(cfg.postprocess) if cfg.get("postprocess") else FileMaxContext(0.0)


def score_soundscapes(
    model: torch.nn.Module,
    files: Sequence[str | Path],
    labels: Sequence[str],
    sample_rate: int,
    window_seconds: float,
    tta: TestTimeShifts,
    batch_size: int = 64,
    device: str = "cpu",
    amp: bool = False,
    progress: bool = False,
) -> SoundscapeProbs:
    """Probabilities of every window of ``files`` by one model, as ``birdsweep infer`` scores.

    Args:
        model: a fold model.
        files: the recordings.
        labels: the model's classes.
        sample_rate: rate the model reads.
        window_seconds: window length.
        tta: test-time shifts (averaged).
        batch_size: windows per forward pass (all shifts of a window count).
        device: where the model runs.
        amp: fp16 autocast on CUDA.
        progress: show a progress bar.

    Raises:
        RuntimeError: a recording could not be decoded.
    """
    reader = WindowReader(sample_rate, window_seconds, context_seconds=tta.context_seconds)
    res = score_files(
        files,
        window_predictor(model, device, amp, desc="soundscapes"),
        reader,
        tta,
        labels,
        n_models=1,
        batch_size=max(1, batch_size // tta.n),
        progress=progress,
        desc="soundscapes",
    )
    if res.failures:
        raise RuntimeError(f"soundscapes: {res.failures[0].error}")
    return SoundscapeProbs(np.array(res.row_ids()), res.file_index, res.probs[:, 0, :])


def soundscape_files(sc: SoundscapeSet) -> list[str]:
    """The recordings of the labelled windows, each once, in order."""
    return list(dict.fromkeys(sc.files))


def _rows(folds: Sequence[SoundscapeProbs], sc: SoundscapeSet) -> np.ndarray:
    """Position of each labelled window of ``sc`` among the scored windows."""
    first = folds[0].row_ids
    if any(not np.array_equal(f.row_ids, first) for f in folds[1:]):
        raise ValueError("the folds' soundscape scores cover different windows")
    where = {r: i for i, r in enumerate(first.tolist())}
    missing = [r for r in sc.row_ids if r not in where]
    if missing:
        raise ValueError(
            f"labelled soundscape row(s) {missing[:3]} name no scored window ({len(missing)} in "
            "all): a window ends every window_seconds from the recording's start, and a trailing "
            "partial window needs at least 1 s of audio"
        )
    return np.array([where[r] for r in sc.row_ids], dtype=np.int64)


@dataclass
class SoundscapeScores:
    """The labelled windows' scores of a run's folds, each ``[N, C]`` in ``sc.row_ids`` order.

    Attributes:
        scores: the folds combined by ``method``, with the recording context.
        raw: the mean over folds, each window on its own.
        fold_probs: ``[F, N, C]`` each fold's probabilities.
        fold_scores: ``[F, N, C]`` the same with the recording context.
    """

    scores: np.ndarray
    raw: np.ndarray
    fold_probs: np.ndarray
    fold_scores: np.ndarray


def soundscape_scores(
    folds: Sequence[SoundscapeProbs],
    sc: SoundscapeSet,
    context: FileMaxContext,
    method: str = "mean",
) -> SoundscapeScores:
    """Combine folds over every window of their recordings (as ``birdsweep infer`` combines the
    models of an ensemble), then pick the labelled windows.

    Args:
        folds: each fold's :class:`SoundscapeProbs` (of the same windows).
        sc: the labelled windows.
        context: the recording context.
        method: ``mean`` | ``rank`` over folds.
    """
    pick = _rows(folds, sc)
    per_model = np.stack([f.probs for f in folds], axis=1)  # [N, F, C]
    recording = folds[0].recording
    return SoundscapeScores(
        scores=window_scores(per_model, recording, method, context)[pick],
        raw=window_scores(per_model, recording, "mean")[pick],
        fold_probs=per_model[pick].swapaxes(0, 1),
        fold_scores=context(per_model, recording)[pick].swapaxes(0, 1),
    )
