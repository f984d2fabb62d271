"""Atomic file writes: a temp file next to the target, then a rename (torch-free)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, write) -> None:
    """Call ``write(file_obj)`` on a temp file next to ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically (temp file + rename)."""
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=float))


def replace_folder(new: Path, out: Path, aside: Path) -> None:
    """Put folder ``new`` at ``out`` with two renames: an existing ``out`` is moved to ``aside``
    first and deleted only once ``new`` is in place (a crash in between leaves it at
    ``aside``, from where a caller can restore it)."""
    if out.exists():
        os.replace(out, aside)
        os.replace(new, out)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(new, out)
