"""Decode audio files to mono float32 at a target sample rate."""

from __future__ import annotations

import logging
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".ogg", ".wav", ".flac", ".mp3", ".oga", ".opus", ".aif", ".aiff")


class AudioError(RuntimeError):
    """An audio file cannot be used; the message names the file and the reason."""


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a 1-D signal with a polyphase filter (no-op when the rates match)."""
    if orig_sr == target_sr:
        return wave
    g = gcd(int(orig_sr), int(target_sr))
    return resample_poly(wave, target_sr // g, orig_sr // g).astype(np.float32)


def load_audio(
    path: str | Path,
    sample_rate: int,
    max_seconds: float | None = None,
    offset_seconds: float = 0.0,
) -> np.ndarray:
    """Decode an audio file to mono float32 at ``sample_rate``.

    Args:
        path: an ogg/wav/flac/mp3 file (anything libsndfile reads).
        sample_rate: target rate; other rates are resampled, channels are averaged.
        max_seconds: decode at most this many seconds (None = whole file).
        offset_seconds: start decoding here.

    Returns:
        1-D float32 array.

    Raises:
        AudioError: the file is missing, unreadable, empty or holds NaN/inf samples.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: zero-length file (no audio samples)")
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            start = int(round(offset_seconds * sr))
            if start:
                f.seek(min(start, max(f.frames - 1, 0)))
            frames = -1 if max_seconds is None else int(round(max_seconds * sr))
            data = f.read(frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises RuntimeError/LibsndfileError/TypeError
        raise AudioError(f"{path}: cannot decode ({exc})") from exc
    if data.size == 0:
        raise AudioError(f"{path}: no audio samples (empty or zero-length file)")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wave).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    return resample(np.ascontiguousarray(wave, dtype=np.float32), sr, sample_rate)


def audio_duration(path: str | Path) -> float:
    """Duration of an audio file in seconds (from its header, without decoding)."""
    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise AudioError(f"{path}: cannot read header ({exc})") from exc
    return info.frames / info.samplerate


def list_audio_files(path: str | Path) -> list[Path]:
    """Audio files under a folder (recursively, sorted) or the file itself."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise AudioError(f"{path}: no such file or folder")
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
