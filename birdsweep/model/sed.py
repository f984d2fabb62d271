"""SED / CNN classifier: in-model mel front end -> timm backbone -> registered head.

``forward(wave [B, samples]) -> {"clip": logits [B, C], "frame": logits [B, T', C]}`` and
``forward(wave) == forward_spec(frontend(wave))``, so the training loop can augment the
spectrogram (SpecAugment, mixup) between the two calls.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from birdsweep.model.heads import create_head
from birdsweep.model.pretrained import pretrained_overlay

log = logging.getLogger(__name__)

__all__ = [
    "READOUTS",
    "SEDModel",
    "create_backbone",
    "read_state_dict",
    "window_logits",
    "window_score",
]

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")  # common checkpoint layouts
_PREFIXES = ("module.", "_orig_mod.")  # DDP / torch.compile key prefixes


def create_backbone(name: str, pretrained_file: str | None = None, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` with errors that name the config key and what to do.

    Args:
        name: timm model name, optionally with a pretrained tag (``arch.tag``).
        pretrained_file: Local weights for ``pretrained=True`` instead of the Hugging Face hub
            (path or ``pkg://package/path``; see ``birdsweep.model.pretrained``).
        **kwargs: Passed to ``timm.create_model``.

    Returns:
        The timm model.
    """
    if not timm.is_model(name):
        arch = name.split(".")[0]
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        raise ValueError(
            f"model.backbone: unknown timm model {name!r}; close matches: {close or 'none'} "
            "(see timm.list_models())"
        )
    if kwargs.get("pretrained") and pretrained_file is not None:
        kwargs["pretrained_cfg_overlay"] = pretrained_overlay(pretrained_file, name)
        try:
            model = timm.create_model(name, **kwargs)
        except RuntimeError as err:  # e.g. weights of another architecture
            raise RuntimeError(
                f"model.pretrained_file={pretrained_file}: does not fit {name!r} ({err})"
            ) from err
        model.pretrained_cfg.pop("state_dict", None)  # don't keep a second copy of the weights
        return model
    try:
        return timm.create_model(name, **kwargs)
    except Exception as err:  # typically no network / no cached weights
        if not kwargs.get("pretrained"):
            raise
        raise RuntimeError(
            f"model.backbone: could not load pretrained weights for {name!r} ({err}); set "
            "model.pretrained_file to a local weights file (.pth/.bin/.safetensors), or put "
            "timm's weights in the Hugging Face cache (HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE=1), "
            "or set model.checkpoint_path to a local state dict, or model.pretrained=false"
        ) from err


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict file (``weights_only=True``), unwrapping common layouts.

    Args:
        path: A ``.pt``/``.pth``/``.bin`` file holding a state dict, or a dict with it under
            ``state_dict`` / ``model`` / ``model_state_dict``.

    Returns:
        The state dict, with ``module.`` / ``_orig_mod.`` prefixes stripped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"model.checkpoint_path: no file at {path}; point it at a saved state dict or set it "
            "to null"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in _WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"model.checkpoint_path: {path} does not hold a state dict")
    out = {}
    for k, v in state.items():
        for p in _PREFIXES:
            k = k.removeprefix(p)
        out[k] = v
    return out


def _fit_shapes(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict:
    """Adapt stem convs to a different in_chans (timm rule); drop other shape mismatches."""
    from timm.models import adapt_input_conv

    fitted = {}
    for k, v in state.items():
        if k in own and v.shape != own[k].shape:
            w = own[k]
            if v.dim() == 4 and v.shape[0] == w.shape[0] and v.shape[2:] == w.shape[2:]:
                # the stored stem's own channel count (timm's default assumes RGB)
                v = adapt_input_conv(w.shape[1], v.float(), base_chans=v.shape[1]).to(w.dtype)
                log.info("checkpoint: adapted %s to %d input channels", k, w.shape[1])
            else:
                log.warning(
                    "checkpoint: skipped %s (shape %s vs %s)", k, tuple(v.shape), tuple(w.shape)
                )
                continue
        fitted[k] = v
    return fitted


READOUTS = ("clip", "frame_max", "mean")


class SEDModel(nn.Module):
    """Front end + timm backbone + head, waveform in, logits out.

    Args:
        num_classes: Number of classes C (passed at instantiate time from the label list).
        backbone: timm model name (``model.backbone``), e.g. ``tf_efficientnetv2_s``.
        frontend: Module mapping [B, samples] -> [B, ch, n_mels, T], e.g. ``MelFrontend``.
        head: Name in ``birdsweep.model.heads.HEADS`` (``attention`` | ``cnn``).
        pretrained: Load timm's pretrained weights: from ``pretrained_file`` if set, else from
            the Hugging Face hub / cache (offline: ``HF_HUB_OFFLINE=1`` and a filled cache).
        pretrained_file: Local weights used when ``pretrained`` (``.pth``/``.bin``/
            ``.safetensors`` path or ``pkg://package/path``), loaded by timm's own loader (stem
            adapted to ``in_chans``, classifier dropped); ignored when ``pretrained`` is false.
        checkpoint_path: Local state dict to load after building: a full SEDModel state dict
            or a bare timm backbone one (strict=False; missing/unexpected keys are logged).
        in_chans: Backbone input channels; ``None`` = ``frontend.out_channels``.
        drop_rate: Dropout in the head (and timm's ``drop_rate``).
        drop_path_rate: Stochastic depth rate of the backbone.
        backbone_kwargs: Extra arguments of the timm model (e.g. ``freeze`` of ``aisfx_cnn``).
        head_kwargs: Extra arguments of the head class (e.g. ``hidden``, ``pool_kernel``).
        readout: How a window's score logits (``"score"``, what validation, soundscape scoring
            and exported graphs use) come from the head: ``"clip"`` = the clip logits,
            ``"frame_max"`` = the max over frames of the frame logits (the loudest moment of a
            call decides), ``"mean"`` = the mean of the two.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str,
        frontend: nn.Module,
        head: str = "attention",
        pretrained: bool = False,
        pretrained_file: str | None = None,
        checkpoint_path: str | None = None,
        in_chans: int | None = None,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.1,
        head_kwargs: dict[str, Any] | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        readout: str = "clip",
    ) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"model.readout: {readout!r} is not one of {READOUTS}")
        self.readout = readout
        self.num_classes = num_classes
        self.frontend = frontend
        in_chans = in_chans or getattr(frontend, "out_channels", getattr(frontend, "channels", 1))
        self.backbone = create_backbone(
            backbone,
            pretrained=pretrained and checkpoint_path is None,
            pretrained_file=pretrained_file,
            num_classes=0,
            global_pool="",
            in_chans=in_chans,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            **dict(backbone_kwargs or {}),
        )
        self.head = create_head(
            head,
            self.backbone.num_features,
            num_classes,
            dropout=drop_rate,
            **dict(head_kwargs or {}),
        )
        if checkpoint_path is not None:
            self.load_checkpoint(checkpoint_path)

    def load_checkpoint(self, path: str | Path) -> None:
        """Load a full-model or backbone-only state dict (strict=False, mismatches logged).

        Args:
            path: State dict file (see ``read_state_dict``).
        """
        state = read_state_dict(path)
        full = any(k.startswith(("backbone.", "head.")) for k in state)
        target = self if full else self.backbone
        state = _fit_shapes(state, target.state_dict())
        missing, unexpected = target.load_state_dict(state, strict=False)
        log.info("loaded %s into %s", path, "model" if full else "backbone")
        if missing:
            log.warning("checkpoint %s: %d missing keys: %s", path, len(missing), missing[:10])
        if unexpected:
            log.warning(
                "checkpoint %s: %d unexpected keys: %s", path, len(unexpected), unexpected[:10]
            )

    def forward_spec(self, spec: torch.Tensor) -> dict[str, torch.Tensor]:
        """Spectrogram [B, ch, n_mels, T] -> logits {"clip": [B, C], "frame": [B, T', C],
        "score": [B, C]} (``score`` per ``readout``)."""
        out = self.head(self.backbone.forward_features(spec))  # features [B, F, f, T']
        return {**out, "score": window_logits(out, self.readout)}

    def forward(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        """Waveform [B, samples] -> logits {"clip", "frame", "score"} (see ``forward_spec``)."""
        return self.forward_spec(self.frontend(wave))


def window_score(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """The score logits [B, C] of a model's outputs: ``"score"``, else ``"clip"``."""
    return out["score"] if "score" in out else out["clip"]


def window_logits(out: dict[str, torch.Tensor], readout: str = "clip") -> torch.Tensor:
    """A window's score logits [B, C] from head outputs ``{"clip", "frame"}``.

    Args:
        out: head outputs; ``"frame"`` is needed unless ``readout="clip"``.
        readout: ``"clip"`` | ``"frame_max"`` | ``"mean"`` (see :class:`SEDModel`).
    """
    if readout == "clip":
        return out["clip"]
    frame_max = out["frame"].amax(dim=1)  # [B, T', C] -> [B, C]
    return frame_max if readout == "frame_max" else 0.5 * (out["clip"] + frame_max)
