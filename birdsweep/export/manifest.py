"""``manifest.json`` of an ensemble folder: everything inference needs besides the ONNX files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT = "birdsweep-onnx-ensemble"
FORMAT_VERSION = 1
REQUIRED = ("labels", "sample_rate", "window_seconds", "graphs", "models", "combine")


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
    for g in man["graphs"]:
        if not (model_dir / g["file"]).is_file():
            raise FileNotFoundError(f"{path}: listed model file {g['file']} is missing")
    return man
