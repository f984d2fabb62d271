"""Pseudo-labels for self-training: soft labels of unlabelled soundscape windows.

An exported ensemble scores every 5 s window of unlabelled soundscapes (e.g. the data set's
``train_soundscapes/``). The result is written in the submission shape (``row_id`` + one column
per label in manifest order), which ``data.pseudo_labels`` reads back into training.

Example:
    >>> from birdsweep.infer.pseudo import pseudo_label
    >>> df = pseudo_label("outputs/ensemble", "data/train_soundscapes", "pseudo.csv")  # doctest: +SKIP
    >>> df.attrs["n_windows"], len(df)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from birdsweep.infer.ensemble import Ensemble, gather_audio_files
from birdsweep.infer.output import write_table
from birdsweep.scoring.combine import COMBINE_METHODS
from birdsweep.scoring.combine import combine as combine_probs
from birdsweep.scoring.submission import submission_table

log = logging.getLogger(__name__)

ACTIVATIONS = ("auto", "sigmoid", "softmax")
# sigmoid outputs are clipped to [EPS, 1 - EPS] before they are turned back into logits
# (float32 probabilities saturate: logits beyond about +-16 are not recoverable)
_EPS = 1e-7


def to_softmax(probs: np.ndarray) -> np.ndarray:
    """Per-model softmax over classes of ensemble outputs that are ``sigmoid(logits)``.

    The sigmoid is inverted (``logit = log p - log(1 - p)``) and a softmax taken over the
    class axis: the probabilities a softmax cross-entropy model (``loss=ce``) was trained to give.

    Args:
        probs: ``[N, M, C]`` sigmoid outputs of M models.

    Returns:
        ``[N, M, C]`` float32; each model's row sums to 1.
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1 - _EPS)
    logits = np.log(p) - np.log1p(-p)
    logits -= logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def model_activations(manifest: dict[str, Any], activation: str = "auto") -> list[str]:
    """The activation that turns each ensemble model's outputs into probabilities.

    Args:
        manifest: an ensemble manifest (its ``models[*].loss`` records each model's training
            loss; manifests written before it was recorded count as ``bce``).
        activation: ``auto`` (``softmax`` for a model trained with ``loss=ce``, ``sigmoid``
            otherwise), or ``sigmoid`` / ``softmax`` for every model.

    Returns:
        One of ``sigmoid`` / ``softmax`` per model, in manifest order.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"--activation {activation!r} is not one of {ACTIVATIONS}")
    models = manifest["models"]
    if activation != "auto":
        return [activation] * len(models)
    return ["softmax" if m.get("loss") == "ce" else "sigmoid" for m in models]


def _check_rules(floor: float, threshold: float) -> None:
    if not 0 <= floor <= 1:
        raise ValueError(f"--floor must be in [0, 1], got {floor}")
    if threshold < 0:
        raise ValueError(f"--threshold must be >= 0, got {threshold}")


def soft_labels(table: pd.DataFrame, floor: float, threshold: float) -> pd.DataFrame:
    """Trim and filter a submission-shaped table of window scores into pseudo-labels.

    Args:
        table: ``row_id`` + one column per label (as from
            :func:`birdsweep.scoring.submission.submission_table`).
        floor: scores below it become 0 (removes the low-level noise of every class).
        threshold: a window is kept only when its largest (trimmed) score is at least this.

    Returns:
        The kept rows (index reset), same columns (scores compared and returned as float64, so
        the rules hold exactly for the returned values).
    """
    _check_rules(floor, threshold)
    labels = [c for c in table.columns if c != "row_id"]
    values = table[labels].to_numpy(dtype=np.float64, copy=True)
    values[values < floor] = 0.0
    keep = values.max(axis=1) >= threshold if values.shape[1] else np.zeros(len(values), dtype=bool)
    out = pd.DataFrame(values[keep], columns=labels)
    out.insert(0, "row_id", table["row_id"].to_numpy()[keep])
    return out


def class_counts(table: pd.DataFrame, threshold: float) -> pd.Series:
    """Windows per label whose score is at least ``threshold``.

    Args:
        table: ``row_id`` + label columns.
        threshold: smallest score counted.

    Returns:
        Integer Series indexed by label, in column order.
    """
    labels = [c for c in table.columns if c != "row_id"]
    return (table[labels] >= threshold).sum(axis=0).astype(int)


def pseudo_label(
    model_dir: str | Path,
    audio: str | Path | Sequence[str | Path],
    out: str | Path,
    floor: float = 0.05,
    threshold: float = 0.5,
    combine: str = "mean",
    threads: int | None = None,
    activation: str = "auto",
    **kwargs: Any,
) -> pd.DataFrame:
    """Score unlabelled soundscapes with an ensemble and write soft labels per window.

    Never point this at the labelled test soundscapes: their windows would leak into training.

    Args:
        model_dir: ensemble folder from ``birdsweep export``.
        audio: soundscape files and/or folders (searched recursively).
        out: CSV to write (atomically): ``row_id`` (``<stem>_<end second>``) + one column per
            label in manifest order; a header-only file when no window is kept.
        floor: scores below it are written as 0.
        threshold: only windows whose largest score is at least this are written.
        combine: ``mean`` (probabilities: the default, since they become training targets) or
            ``rank`` (0–1 ranks across the windows scored; not probabilities).
        threads: the runtime's intra-op threads (None = one per core).
        activation: ``auto`` (default) = per model, from the training loss recorded in the
            manifest: ``softmax`` for ``loss=ce``, ``sigmoid`` otherwise; ``sigmoid`` = the
            ensemble's outputs as they are (models trained with a sigmoid loss: ``loss=bce`` /
            ``focal``); ``softmax`` = each model's outputs turned into a softmax over classes
            before combining (models trained with ``loss=ce``, whose sigmoid outputs are not
            probabilities: they put several classes of most windows above 0.5).
        **kwargs: :meth:`~birdsweep.infer.ensemble.Ensemble.load` options (``runtime``,
            ``batch_size``, ``progress``, ...).

    Returns:
        The written table. ``attrs``: ``n_windows`` (decoded windows scored),
        ``class_counts`` (dict label → kept windows with that label's score ≥ ``threshold``),
        ``failures`` (undecodable files; their windows are never written).

    Raises:
        FileNotFoundError: no audio file under ``audio``.
        ValueError: bad ``floor`` / ``threshold`` / ``combine`` / ``activation``.
    """
    if combine not in COMBINE_METHODS:
        raise ValueError(f"--combine {combine!r} is not one of {COMBINE_METHODS}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"--activation {activation!r} is not one of {ACTIVATIONS}")
    _check_rules(floor, threshold)  # fail before the (slow) inference
    files = gather_audio_files(audio)
    ens = Ensemble.load(model_dir, threads=threads, **kwargs)
    res = ens.run(files)
    ok = res.decoded  # windows filled in for undecodable files are no labels
    acts = model_activations(ens.manifest, activation)
    probs = res.probs[ok]
    soft = [i for i, a in enumerate(acts) if a == "softmax"]
    if soft:
        probs[:, soft] = to_softmax(probs[:, soft])
    scores = pd.DataFrame(combine_probs(probs, combine), index=res.index()[ok], columns=res.labels)
    table = soft_labels(submission_table(scores), floor, threshold)
    write_table(table, out)
    counts = class_counts(table, threshold)
    table.attrs.update(
        n_windows=int(len(scores)),
        class_counts={str(k): int(v) for k, v in counts.items()},
        activations=acts,
        failures=[f.__dict__ for f in res.failures],
    )
    log.info(
        "%d of %d window(s) of %d soundscape(s) kept (%s, max score >= %g, scores < %g set to 0) "
        "-> %s",
        len(table),
        len(scores),
        len(files),
        "/".join(sorted(set(acts))),
        threshold,
        floor,
        out,
    )
    return table
