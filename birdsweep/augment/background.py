"""Background-only noise from field recordings: the calls in them are turned down to the floor.

The noise that :class:`birdsweep.augment.wave.BackgroundNoise` mixes into training clips comes
from ``train_soundscapes``, and soundscapes are full of calls of the very species being learnt
(most windows of a BirdCLEF soundscape hold one). Mixed into a clip labelled with another
species, such a call teaches the model that it is *not* its species. :class:`CallSuppressor`
keeps what is stationary in a recording (wind, rain, insect choruses, the recorder's hiss) and
clips every time-frequency cell that stands out of its band's running level (calls, whichever
species sings them) down to that level.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import numpy as np
from scipy.signal import istft, stft

from birdsweep.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

_EPS = 1e-12
_CACHE_VERSION = 1  # part of every cache key: raise it when the suppression itself changes


def band_floor(magnitude: np.ndarray, frames_per_block: int) -> np.ndarray:
    """Running level of each frequency band: the median of each block of frames, linearly
    interpolated between block centres.

    The frames are split into ``round(T / frames_per_block)`` (at least one) blocks of nearly
    equal length, so no block is a stub at the end.

    Args:
        magnitude: ``[F, T]`` STFT magnitudes.
        frames_per_block: frames per median block (≥ 1).

    Returns:
        ``[F, T]`` floor, same dtype.
    """
    n_frames = magnitude.shape[1]
    n_blocks = max(1, min(n_frames, round(n_frames / frames_per_block)))
    bounds = np.linspace(0, n_frames, n_blocks + 1).round().astype(int)
    medians = np.stack(
        [
            np.median(magnitude[:, a:b], axis=1)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ],
        axis=1,
    )
    if n_blocks == 1:
        return np.repeat(medians, n_frames, axis=1)
    centres = (bounds[:-1] + bounds[1:] - 1) / 2.0
    frames = np.arange(n_frames)
    idx = np.clip(np.searchsorted(centres, frames, side="right") - 1, 0, n_blocks - 2)
    frac = np.clip((frames - centres[idx]) / (centres[idx + 1] - centres[idx]), 0.0, 1.0)
    return (medians[:, idx] * (1.0 - frac) + medians[:, idx + 1] * frac).astype(magnitude.dtype)


class CallSuppressor:
    """Turn the calls of a noise recording down to its background level.

    Each STFT cell louder than ``max_above_db`` over its band's running median (blocks of
    ``block_seconds``) is scaled down to that limit; the phase is kept and the recording
    resynthesised. Stationary sound (wind, rain, insect choruses) passes; transient calls of
    any species, listed or not, go.

    Args:
        max_above_db: how far a cell may rise over its band's running median, dB (> 0).
        block_seconds: length of the median blocks, s; longer than a call bout, shorter than
            the swell of a chorus.
        n_fft: STFT size in samples (window and hop ``n_fft // 4``).
        cache_dir: folder where each suppressed recording is kept (keyed by its samples and
            these settings), so later folds and runs load it instead of recomputing it;
            ``None`` computes every time.

    Example:
        >>> import numpy as np
        >>> sr = 32000
        >>> t = np.arange(10 * sr) / sr
        >>> hiss = np.random.default_rng(0).normal(0, 0.01, t.size).astype(np.float32)
        >>> call = np.where((t > 4) & (t < 5), 0.2 * np.sin(2 * np.pi * 3000 * t), 0)
        >>> out = CallSuppressor()(hiss + call.astype(np.float32), sr)
        >>> bool(np.abs(out[4 * sr : 5 * sr]).max() < 0.1)
        True
    """

    def __init__(
        self,
        max_above_db: float = 6.0,
        block_seconds: float = 6.0,
        n_fft: int = 1024,
        cache_dir: str | Path | None = None,
    ) -> None:
        if max_above_db <= 0:
            raise ValueError(f"CallSuppressor.max_above_db must be > 0, got {max_above_db}")
        if block_seconds <= 0:
            raise ValueError(f"CallSuppressor.block_seconds must be > 0, got {block_seconds}")
        if n_fft < 16 or n_fft % 4:
            raise ValueError(f"CallSuppressor.n_fft must be a multiple of 4, >= 16; got {n_fft}")
        self.max_above_db = float(max_above_db)
        self.block_seconds = float(block_seconds)
        self.n_fft = int(n_fft)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Return ``audio`` (mono float32 ``[N]``) with its calls turned down, same length."""
        audio = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
        if self.cache_dir is None:
            return self._suppress(audio, sample_rate)
        key = hashlib.blake2b(audio.tobytes(), digest_size=16)
        settings = (_CACHE_VERSION, sample_rate, self.max_above_db, self.block_seconds, self.n_fft)
        key.update(repr(settings).encode())
        path = self.cache_dir / f"{key.hexdigest()}.npy"
        if path.is_file():
            try:
                out = np.load(path)
                if out.shape == audio.shape:
                    return out
            except (OSError, ValueError) as exc:  # a damaged entry is recomputed
                log.warning("CallSuppressor: cache file %s unreadable (%s); recomputing", path, exc)
        out = self._suppress(audio, sample_rate)
        buf = io.BytesIO()
        np.save(buf, out)
        atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))
        return out

    def _suppress(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        if audio.size < self.n_fft:
            return audio.copy()
        hop = self.n_fft // 4
        _, _, spec = stft(audio, nperseg=self.n_fft, noverlap=self.n_fft - hop)
        magnitude = np.abs(spec)
        frames = max(1, round(self.block_seconds * sample_rate / hop))
        limit = band_floor(magnitude, frames) * 10.0 ** (self.max_above_db / 20.0)
        spec *= np.minimum(1.0, limit / np.maximum(magnitude, _EPS))
        _, out = istft(spec, nperseg=self.n_fft, noverlap=self.n_fft - hop)
        out = out[: audio.size]
        if out.size < audio.size:
            out = np.pad(out, (0, audio.size - out.size))
        return out.astype(np.float32)

    def __repr__(self) -> str:
        return (
            f"CallSuppressor(max_above_db={self.max_above_db}, "
            f"block_seconds={self.block_seconds}, n_fft={self.n_fft}, cache_dir={self.cache_dir})"
        )
