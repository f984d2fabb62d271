"""Torch datasets over the decoded-audio cache: random training crops and fixed windows."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from birdsweep.data.cache import AudioCache

ClipTransform = Callable[[np.ndarray, int], np.ndarray]


def fit_length(wave: np.ndarray, n: int, mode: str = "wrap") -> np.ndarray:
    """Pad (``wrap`` repeats the clip, ``constant`` adds zeros) or cut ``wave`` to ``n`` samples."""
    if len(wave) >= n:
        return wave[:n]
    if mode == "wrap" and len(wave) > 0:
        return np.resize(wave, n).astype(np.float32, copy=False)
    return np.pad(wave, (0, n - len(wave)))


def multi_hot(
    num_classes: int, primary: int | Sequence[int], secondary: Sequence[int] = (), sec: float = 0.0
) -> np.ndarray:
    """Target row: ``1.0`` for primary label(s), ``sec`` for secondary ones."""
    y = np.zeros(num_classes, dtype=np.float32)
    if sec > 0 and len(secondary):
        y[list(secondary)] = sec
    y[primary] = 1.0
    return y


class TrainCrops(Dataset):
    """Random crops of training clips with their multi-hot targets and sample weights.

    Args:
        cache: decoded audio.
        paths: clip paths (cache keys).
        primary: primary label index per clip.
        secondary: secondary label indices per clip.
        ratings: BirdCLEF ``rating`` per clip (0 = unrated).
        num_classes: number of labels.
        crop_samples: crop length in samples.
        secondary_target: target value of secondary labels (0 = ignore them).
        rating_weighted: weight samples by ``rating / 5`` (unrated = 1).
        clip_transform: optional per-clip CPU transform ``f(wave, sample_rate)``.
        seed: base seed; crops differ per epoch via :meth:`set_epoch`.
        repeats: each clip appears this many times per epoch, each time with its own crop.
    """

    def __init__(
        self,
        cache: AudioCache,
        paths: Sequence[str],
        primary: Sequence[int],
        secondary: Sequence[Sequence[int]],
        ratings: Sequence[float],
        num_classes: int,
        crop_samples: int,
        secondary_target: float = 0.0,
        rating_weighted: bool = False,
        clip_transform: ClipTransform | None = None,
        seed: int = 0,
        repeats: int = 1,
    ):
        if repeats < 1:
            raise ValueError(f"data.clip_repeats must be >= 1, got {repeats}")
        self.repeats = int(repeats)
        self.cache = cache
        self.paths = list(paths)
        self.primary = list(primary)
        self.secondary = [list(s) for s in secondary]
        self.targets = np.stack(
            [
                multi_hot(num_classes, p, s, secondary_target)
                for p, s in zip(self.primary, self.secondary, strict=True)
            ]
        )
        r = np.asarray(ratings, dtype=np.float32)
        self.weights = np.where(r > 0, r / 5.0, 1.0) if rating_weighted else np.ones_like(r)
        self.crop = int(crop_samples)
        self.clip_transform = clip_transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the random crops drawn for the next epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths) * self.repeats

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, item))
        i = item % len(self.paths)
        path = self.paths[i]
        n = self.cache.length(path)
        start = int(rng.integers(0, n - self.crop + 1)) if n > self.crop else 0
        wave = fit_length(self.cache.get(path, start, start + self.crop), self.crop, "wrap")
        if self.clip_transform is not None:
            wave = fit_length(
                np.asarray(self.clip_transform(wave, self.cache.sample_rate), dtype=np.float32),
                self.crop,
            )
        return (
            torch.from_numpy(np.ascontiguousarray(wave)),
            torch.from_numpy(self.targets[i]),
            torch.tensor(self.weights[i], dtype=torch.float32),
        )


class Windows(Dataset):
    """Fixed windows ``(path, start_sample)`` with targets, for validation and soundscapes.

    Args:
        cache: decoded audio.
        items: ``(path, start_sample)`` per window.
        targets: ``[len(items), C]`` target matrix.
        window_samples: window length in samples; a partial last window is zero-padded.
    """

    def __init__(
        self,
        cache: AudioCache,
        items: Sequence[tuple[str, int]],
        targets: np.ndarray,
        window_samples: int,
    ):
        self.cache = cache
        self.items = list(items)
        self.targets = np.asarray(targets, dtype=np.float32)
        self.n = int(window_samples)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        path, start = self.items[i]
        wave = fit_length(self.cache.get(path, start, start + self.n), self.n, "constant")
        return torch.from_numpy(np.ascontiguousarray(wave)), torch.from_numpy(self.targets[i])


def clip_windows(
    cache: AudioCache, paths: Sequence[str], window_samples: int, max_windows: int
) -> list[tuple[int, int]]:
    """Windows of held-out clips: up to ``max_windows`` consecutive windows from each clip start.

    Returns:
        ``(clip_position, start_sample)`` pairs. A partial last window counts when it holds at
        least half a window of audio; a clip shorter than one window gives one padded window.
    """
    out = []
    for j, p in enumerate(paths):
        n = max(1, (cache.length(p) + window_samples // 2) // window_samples)
        out.extend((j, k * window_samples) for k in range(min(n, max_windows)))
    return out


class PseudoMix(Dataset):
    """Training items that are pseudo-labelled soundscape windows with probability ``rate``.

    Item ``i`` is, by a per-epoch coin flip, either ``clips[i]`` or a random pseudo-labelled
    window (soft targets, weight 1), so batches mix both at the rate ``rate``. The rate is
    ``prob`` capped so that a pseudo-labelled window is not drawn more often than a training
    clip: with few kept windows (a strict threshold), ``prob`` alone would repeat the same
    handful of windows across a large share of every batch.

    Args:
        clips: the training crops (:class:`TrainCrops`).
        windows: pseudo-labelled windows (:class:`Windows`).
        prob: largest share of items replaced by pseudo-labelled windows.
        seed: base seed of the coin flips.
    """

    def __init__(self, clips: TrainCrops, windows: Windows, prob: float, seed: int = 0):
        if not 0 <= prob <= 1:
            raise ValueError(f"data.pseudo_prob must be in [0, 1], got {prob}")
        self.clips, self.windows, self.prob, self.seed = clips, windows, float(prob), seed
        n_clips = len(clips) / max(1, clips.repeats)
        n_win = len(windows)
        self.rate = min(self.prob, n_win / (n_win + n_clips)) if n_win else 0.0
        self.epoch = 0

    @property
    def repeats(self) -> int:
        return self.clips.repeats

    def set_epoch(self, epoch: int) -> None:
        """New coin flips and crops for the next epoch."""
        self.epoch = epoch
        self.clips.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, i, 1))
        if rng.random() < self.rate:
            wave, target = self.windows[int(rng.integers(len(self.windows)))]
            return wave, target, torch.tensor(1.0)
        return self.clips[i]
