"""Checkpoints: plain dicts of tensors and primitives, written atomically, loaded with
``weights_only=True`` (nothing is pickled)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from birdsweep.atomic import atomic_write_bytes
from birdsweep.config import build_artefact_model, refuse_interpolations


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


def load_model(checkpoint: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a fold model from its checkpoint (config, labels and weights inside it).

    ``model.pretrained`` / ``model.checkpoint_path`` are switched off while building: the
    checkpoint's own weights replace them, and no download or extra file is needed.

    Args:
        checkpoint: a fold ``best.pt`` written by ``run_kfold``.

    Returns:
        ``(model in eval mode, checkpoint dict)``.

    The stored config may only name birdsweep's registered model and front end
    (:func:`birdsweep.config.build_artefact_model`): a shared checkpoint never chooses what
    code runs.

    Raises:
        ValueError: the checkpoint lacks ``labels`` or ``config``, or its config is refused
            (:class:`birdsweep.config.UntrustedConfigError`).
    """
    ck = load_checkpoint(checkpoint)
    for key in ("labels", "config"):
        if key not in ck:
            raise ValueError(
                f"{checkpoint}: checkpoint has no {key!r}; only fold checkpoints written by "
                "python run.py (best.pt) can be exported"
            )
    cfg = OmegaConf.create(ck["config"])
    if not isinstance(cfg, DictConfig) or not isinstance(cfg.get("model"), DictConfig):
        raise ValueError(f"{checkpoint}: the checkpoint's config has no 'model' section")
    refuse_interpolations(cfg, str(checkpoint))
    model = build_artefact_model(cfg.model, str(checkpoint), num_classes=len(ck["labels"]))
    model.load_state_dict(ck["state_dict"])
    return model.eval(), ck
