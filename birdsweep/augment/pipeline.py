"""The augmentation pipeline the training loop uses (config group ``aug``).

Usage in the loop::

    aug = instantiate(cfg.aug)
    aug.bind_noise(noise_clips, sample_rate)           # once per fold
    clip_tf = aug.clip_transform                       # per-clip CPU transform, or None
    wave, target, weight = aug.wave(wave, target, weight)   # on the batch's device
    spec = model.frontend(wave)
    spec, target, weight = aug.spec(spec, target, weight)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
BatchTransform = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Batch]
Transforms = Mapping[str, BatchTransform | None] | Sequence[BatchTransform | None] | None


def _as_list(transforms: Transforms, key: str) -> list[BatchTransform]:
    """Turn a name->transform mapping (config order) or a list into a list, dropping ``None``."""
    if transforms is None:
        return []
    items = list(transforms.values()) if isinstance(transforms, Mapping) else list(transforms)
    out = [t for t in items if t is not None]
    for t in out:
        if not callable(t):
            raise TypeError(
                f"aug.{key}: {t!r} is not a transform; each entry needs a _target_ "
                "(e.g. birdsweep.augment.wave.Gain)"
            )
    return out


class AugmentPipeline:
    """Batch augmentations on the device plus an optional per-clip CPU transform.

    Args:
        wave: transforms on the waveform batch ``[B, N]``, applied in order. A mapping
            (name -> transform, ``None`` disables an entry) or a list.
        spec: transforms on the spectrogram batch ``[B, ch, M, T]``, same form.
        clip: callable ``(samples float32 [N], sample_rate) -> samples`` run per clip in the
            Dataset (e.g. an ``audiomentations.Compose``), or ``None``.
    """

    def __init__(
        self,
        wave: Transforms = None,
        spec: Transforms = None,
        clip: Callable[..., np.ndarray] | None = None,
    ) -> None:
        self.wave_transforms = _as_list(wave, "wave")
        self.spec_transforms = _as_list(spec, "spec")
        self.clip = clip

    @property
    def clip_transform(self) -> Callable[[np.ndarray, int], np.ndarray] | None:
        """Per-clip CPU transform for the Dataset, or ``None``."""
        return self.clip

    @property
    def is_identity(self) -> bool:
        """True when the pipeline changes nothing (the ``clean`` option)."""
        return not self.wave_transforms and not self.spec_transforms and self.clip is None

    @property
    def needs_noise(self) -> bool:
        """True when a transform takes noise recordings, so the loop should decode them."""
        return any(hasattr(t, "bind_noise") for t in self.wave_transforms + self.spec_transforms)

    def bind_noise(self, noise_clips: Sequence[np.ndarray], sample_rate: int) -> None:
        """Give noise recordings to every transform that takes them (e.g. BackgroundNoise).

        Args:
            noise_clips: mono float32 arrays at ``sample_rate``; may be empty.
            sample_rate: sample rate of the training batches.
        """
        for t in self.wave_transforms + self.spec_transforms:
            bind: Any = getattr(t, "bind_noise", None)
            if bind is not None:
                bind(noise_clips, sample_rate)

    @staticmethod
    def _run(transforms: list[BatchTransform], x: torch.Tensor, *rest: torch.Tensor) -> Batch:
        target, weight = rest
        for t in transforms:
            x, target, weight = t(x, target, weight)
        return x, target, weight

    def wave(self, wave: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> Batch:
        """Apply the waveform transforms.

        Args:
            wave: float [B, N].
            target: float [B, C] in [0, 1].
            weight: float [B] sample weights.

        Returns:
            ``(wave, target, weight)`` with the same shapes and dtypes.
        """
        return self._run(self.wave_transforms, wave, target, weight)

    def spec(self, spec: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> Batch:
        """Apply the spectrogram transforms.

        Args:
            spec: float [B, ch, M, T].
            target: float [B, C] in [0, 1].
            weight: float [B] sample weights.

        Returns:
            ``(spec, target, weight)`` with the same shapes and dtypes.
        """
        return self._run(self.spec_transforms, spec, target, weight)

    def __repr__(self) -> str:
        return (
            f"AugmentPipeline(wave={self.wave_transforms}, spec={self.spec_transforms}, "
            f"clip={self.clip!r})"
        )
