"""``manifest.json`` of an ensemble folder: everything inference needs besides the ONNX files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT = "birdsweep-onnx-ensemble"
FORMAT_VERSION = 1
REQUIRED = ("labels", "sample_rate", "window_seconds", "graphs", "models", "combine")
# metadata keys inside each ONNX file, written at export: what the graph was exported for
LABELS_KEY, MODELS_KEY = "birdsweep.labels", "birdsweep.n_models"


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    """Read and check ``<model_dir>/manifest.json``.

    Args:
        model_dir: a folder written by ``birdsweep export``.

    Returns:
        The manifest dict.

    Raises:
        FileNotFoundError: no manifest or a listed ONNX file is missing.
        ValueError: the manifest is not a birdsweep ensemble manifest of a known version.
    """
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"--model {model_dir}: no {MANIFEST}; point it at a folder written by birdsweep export"
        )
    try:
        man = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if man.get("format") != FORMAT or int(man.get("format_version", -1)) > FORMAT_VERSION:
        raise ValueError(
            f"{path}: not a {FORMAT} manifest of version <= {FORMAT_VERSION} "
            f"(format={man.get('format')!r}, version={man.get('format_version')!r}); "
            "upgrade birdsweep or re-export"
        )
    missing = [k for k in REQUIRED if k not in man]
    if missing:
        raise ValueError(f"{path}: manifest lacks {missing}")
    _check_structure(man, path)
    for g in man["graphs"]:
        file = model_dir / g["file"]
        if not file.is_file():
            raise FileNotFoundError(f"{path}: listed model file {g['file']} is missing")
        if "sha256" in g and sha256_of(file) != g["sha256"]:
            raise ValueError(
                f"{file}: changed since export (its SHA-256 differs from the manifest's): "
                "truncated, replaced or edited; re-export the ensemble"
            )
    return man


def _check_structure(man: dict[str, Any], path: Path) -> None:
    """Labels, graphs and model indices hang together (before any file is opened)."""
    labels = man["labels"]
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) or not labels:
        raise ValueError(f"{path}: 'labels' must be a non-empty list of strings")
    if len(set(labels)) != len(labels):
        raise ValueError(f"{path}: 'labels' has duplicates")
    if "num_classes" in man and man["num_classes"] != len(labels):
        raise ValueError(
            f"{path}: num_classes={man['num_classes']!r} but {len(labels)} labels are listed"
        )
    indices = []
    for g in man["graphs"]:
        file = g.get("file") if isinstance(g, dict) else None
        if not isinstance(file, str) or Path(file).name != file or file in ("", ".", ".."):
            raise ValueError(f"{path}: graph file {file!r} must be a plain file name in the folder")
        indices += list(g.get("models", []))
    if sorted(indices) != list(range(len(man["models"]))):
        raise ValueError(
            f"{path}: the graphs' model indices {sorted(indices)} do not cover the "
            f"{len(man['models'])} listed models once each"
        )


def check_session(session: Any, graph: dict[str, Any], labels: list[str], file: Path) -> None:
    """Refuse a graph session whose outputs or stamped labels differ from the manifest's.

    Args:
        session: a :class:`birdsweep.scoring.session.GraphSession` of ``file``.
        graph: the manifest's entry of that file.
        labels: the manifest's label order.
        file: the file, for messages.

    Raises:
        ValueError: naming the file and what differs.
    """
    shape = session.output_shape  # [batch, models_in_graph, classes]
    want = [len(graph["models"]), len(labels)]
    got = shape[1:]
    if len(shape) != 3 or any(g is not None and g != w for g, w in zip(got, want, strict=True)):
        raise ValueError(
            f"{file}: output shape {shape} does not fit the manifest's {want[0]} model(s) x "
            f"{want[1]} labels"
        )
    meta = session.metadata
    if LABELS_KEY in meta and json.loads(meta[LABELS_KEY]) != list(labels):
        raise ValueError(
            f"{file}: was exported for another label order than the manifest lists (labels "
            "edited or swapped after export); re-export the ensemble"
        )
