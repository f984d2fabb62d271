"""Checkpoints: plain dicts of tensors and primitives, written atomically, loaded with
``weights_only=True`` (nothing is pickled)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from birdsweep.atomic import atomic_write_bytes


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Save a checkpoint dict atomically with ``torch.save``.

    Raises:
        WriteError: the write failed, in one line naming ``path`` and the free space (a full
            disk, which torch itself reports as ``enforce fail at inline_container.cc ... file
            write failed`` or an ``OSError``); the previous checkpoint at ``path`` is kept.
    """
    atomic_write_bytes(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        FileNotFoundError / ValueError naming the path when it is missing or not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable birdsweep checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a birdsweep checkpoint (no 'state_dict' key)")
    return ckpt
