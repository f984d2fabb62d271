"""Read and validate BirdCLEF-layout metadata: ``taxonomy.csv`` (label order) and ``train.csv``."""

from __future__ import annotations

import ast
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

TRAIN_COLUMNS = ("primary_label", "secondary_labels", "filename")
TAXONOMY_COLUMNS = ("primary_label",)


class DataError(ValueError):
    """Bad input data: the message names the file, row or key and says what to do."""


@dataclass
class Metadata:
    """Parsed metadata of a BirdCLEF-layout folder.

    Attributes:
        root: the data folder.
        labels: class ids in ``taxonomy.csv`` order (= submission column order).
        train: ``train.csv`` with added columns ``path`` (absolute audio path), ``label_idx``
            (primary label index) and ``secondary_idx`` (list of label indices).
    """

    root: Path
    labels: list[str]
    train: pd.DataFrame

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def _read_csv(path: Path, required: tuple[str, ...], hint: str) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file not found; {hint}")
    try:
        df = pd.read_csv(path, dtype={"primary_label": str})
    except Exception as exc:  # pandas raises many types for malformed CSVs
        raise DataError(f"{path}: cannot be read as CSV ({exc})") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)}. "
            "Expected BirdCLEF's layout."
        )
    return df


def parse_label_list(value: object, where: str = "") -> list[str]:
    """Parse a BirdCLEF ``secondary_labels`` cell such as ``"['abc123', '1139490']"``.

    Args:
        value: the cell (string, list, NaN or empty).
        where: file/row description used in the error message.

    Returns:
        The labels as strings, without empty entries.
    """
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    if isinstance(value, (list, tuple)):
        items = value
    else:
        text = str(value).strip()
        if text in ("", "[]", "['']"):
            return []
        try:
            items = ast.literal_eval(text)
        except (ValueError, SyntaxError) as exc:
            raise DataError(f"{where}: secondary_labels {text!r} is not a list literal") from exc
        if isinstance(items, str):
            items = [items]
    return [str(x).strip() for x in items if str(x).strip()]


def load_metadata(
    root: str | Path, audio_dir: str = "train_audio", strict_labels: bool = True
) -> Metadata:
    """Load ``taxonomy.csv`` and ``train.csv`` of a BirdCLEF-layout folder.

    Args:
        root: the data folder (``data.root``).
        audio_dir: sub-folder holding the training clips.
        strict_labels: raise when a primary label is missing from ``taxonomy.csv``
            (otherwise such rows are dropped with a warning). Unknown secondary labels are
            always dropped with a warning.

    Returns:
        The parsed :class:`Metadata`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"data.root: {root} is not a folder; point data.root at a BirdCLEF-layout folder "
            "or run `birdsweep demo-data --out DIR`"
        )
    hint = "point data.root at a BirdCLEF-layout folder or run `birdsweep demo-data --out DIR`"
    tax = _read_csv(root / "taxonomy.csv", TAXONOMY_COLUMNS, hint)
    train = _read_csv(root / "train.csv", TRAIN_COLUMNS, hint)
    labels = [str(x) for x in tax["primary_label"]]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise DataError(f"{root / 'taxonomy.csv'}: duplicate primary_label(s) {dup}")
    index = {lab: i for i, lab in enumerate(labels)}

    if train.empty:
        raise DataError(
            f"{root / 'train.csv'}: has a header but no rows; list one training clip per row "
            f"(columns {list(TRAIN_COLUMNS)})"
        )
    train = train.copy()
    train["primary_label"] = train["primary_label"].astype(str)
    unknown = sorted(set(train["primary_label"]) - set(index))
    if unknown:
        msg = (
            f"{root / 'train.csv'}: primary_label(s) {unknown[:10]} "
            f"({len(unknown)} in all) are not in taxonomy.csv"
        )
        if strict_labels:
            raise DataError(msg + "; add them to taxonomy.csv or remove those rows")
        log.warning("%s; dropping those rows", msg)
        train = train[train["primary_label"].isin(index)].reset_index(drop=True)

    secondary: list[list[int]] = []
    dropped: set[str] = set()
    for row, cell in enumerate(train["secondary_labels"]):
        names = parse_label_list(cell, where=f"{root / 'train.csv'} row {row + 2}")
        keep = [index[n] for n in names if n in index]
        dropped.update(n for n in names if n not in index)
        secondary.append(keep)
    if dropped:
        log.warning(
            "train.csv: %d secondary label(s) not in taxonomy.csv ignored, e.g. %s",
            len(dropped),
            sorted(dropped)[:5],
        )
    train["label_idx"] = train["primary_label"].map(index).astype(int)
    train["secondary_idx"] = secondary
    train["path"] = [str(p) for p in _audio_paths(root, audio_dir, train["filename"])]
    train = _drop_duplicate_files(train, root / "train.csv")
    if "rating" not in train.columns:
        train["rating"] = 5.0
    train["rating"] = pd.to_numeric(train["rating"], errors="coerce").fillna(5.0)
    return Metadata(root=root, labels=labels, train=train)


def _audio_paths(root: Path, audio_dir: str, filenames: pd.Series) -> list[Path]:
    """Absolute clip paths; a ``filename`` that is absolute or leads out of ``audio_dir``
    (``../``) is an error naming its row."""
    base = (root / audio_dir).absolute()
    paths = []
    for row, name in enumerate(filenames):
        text = "" if pd.isna(name) else str(name).strip()
        path = Path(os.path.normpath(base / text))
        if not text or Path(text).is_absolute() or not path.is_relative_to(base):
            raise DataError(
                f"{root / 'train.csv'} row {row + 2}: filename {text!r} is not a path inside "
                f"{base}; give it relative to {audio_dir}/ (e.g. 'label/clip.ogg')"
            )
        paths.append(path)
    return paths


def _drop_duplicate_files(train: pd.DataFrame, csv: Path) -> pd.DataFrame:
    """Keep one row per audio file: a file listed twice would sit in training and validation.

    Repeats with the same labels are dropped with a warning naming them; repeats whose labels
    differ are an error (which row is right cannot be told).
    """
    repeated = train["path"].duplicated(keep=False)
    if not repeated.any():
        return train
    rows = train[repeated]
    labels = rows.groupby("path").agg(
        primary=("primary_label", "nunique"),
        secondary=("secondary_idx", lambda s: len({tuple(sorted(x)) for x in s})),
    )
    conflicting = labels.index[(labels["primary"] > 1) | (labels["secondary"] > 1)]
    if len(conflicting):
        names = rows.loc[rows["path"].isin(conflicting), "filename"].unique().tolist()
        raise DataError(
            f"{csv}: {len(names)} file(s) listed more than once with different labels, e.g. "
            f"{names[:5]}; keep one row per file"
        )
    names = rows["filename"].unique().tolist()
    log.warning(
        "%s: %d file(s) listed more than once; keeping the first row of each, e.g. %s",
        csv,
        len(names),
        names[:5],
    )
    return train[~train["path"].duplicated(keep="first")].reset_index(drop=True)
