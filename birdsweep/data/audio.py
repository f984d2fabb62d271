"""Decode audio files to mono float32 at a target sample rate."""

from __future__ import annotations

import logging
import struct
from math import gcd
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".ogg", ".wav", ".flac", ".mp3", ".oga", ".opus", ".aif", ".aiff")


# decoders may end a block short of the header's count: a Vorbis long block, ~2 MP3 frames
TRUNCATION_TOLERANCE_FRAMES = 2048
TRUNCATION_TOLERANCE_SECONDS = 0.05
_OGG_MAX_PAGE = 27 + 255 + 255 * 255  # page header + segment table + body, at most


class AudioError(RuntimeError):
    """An audio file cannot be used; the message names the file and the reason."""


class TruncatedAudioError(AudioError):
    """A file that decodes to less audio than it declares (cut short, e.g. a partial copy).

    Attributes:
        path: the file.
        decoded_seconds: audio decoded before the file ended.
        declared_seconds: the length its header declares; None when the container declares
            none (an Ogg stream that ends without its end-of-stream page).
    """

    def __init__(
        self,
        path: str | Path,
        decoded_seconds: float,
        declared_seconds: float | None,
        why: str = "",
    ) -> None:
        self.path = str(path)
        self.decoded_seconds = float(decoded_seconds)
        self.declared_seconds = declared_seconds
        if declared_seconds is None:
            msg = (
                f"{path}: decodes to {decoded_seconds:.2f} s, but {why}, so its full length is "
                "unknown (truncated?)"
            )
        else:
            msg = (
                f"{path}: decodes to {decoded_seconds:.2f} s of the {declared_seconds:.2f} s "
                "its header declares (truncated?)"
            )
        super().__init__(msg)


class AudioHeader(Protocol):
    """What :func:`check_complete` reads of an open ``sf.SoundFile`` or of ``sf.info``."""

    format: str
    samplerate: int
    frames: int


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
        AudioError: the file is missing, unreadable, empty or holds NaN/inf samples;
            :class:`TruncatedAudioError` when the part asked for runs past the end of a file
            that was cut short (see :func:`check_complete`).
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
                start = min(start, max(f.frames - 1, 0))
                f.seek(start)
            frames = -1 if max_seconds is None else int(round(max_seconds * sr))
            data = f.read(frames=frames, dtype="float32", always_2d=True)
            at_end = frames < 0 or len(data) < frames
    except Exception as exc:  # libsndfile raises RuntimeError/LibsndfileError/TypeError
        raise AudioError(f"{path}: cannot decode ({exc})") from exc
    if data.size == 0:
        raise AudioError(f"{path}: no audio samples (empty or zero-length file)")
    if at_end:
        check_complete(path, (start + len(data)) / sr, f)
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


def _riff_data_frames(path: Path) -> int | None:
    """Frames a WAV's ``data`` chunk declares (libsndfile reports what is left of a cut file)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = 0
            while True:
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = fh.read(size)
                    if len(fmt) < 14:
                        return None
                    block_align = struct.unpack("<H", fmt[12:14])[0]
                    fh.seek(size & 1, 1)
                elif cid == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):  # unknown (streamed) size
                        return None
                    return size // block_align
                else:
                    fh.seek(size + (size & 1), 1)
    except OSError:
        return None


def _mp3_has_length_tag(path: Path) -> bool:
    """Whether an MP3 carries a Xing/Info/VBRI frame count (else its length is an estimate)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(10)
            skip = 0
            if head[:3] == b"ID3" and len(head) == 10:  # ID3v2 tag: syncsafe size
                skip = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
            fh.seek(skip)
            data = fh.read(8192)
    except OSError:
        return False
    for i in range(len(data) - 1):  # the first frame header
        if data[i] == 0xFF and data[i + 1] & 0xE0 == 0xE0:
            first = data[i : i + 200]
            return any(tag in first for tag in (b"Xing", b"Info", b"VBRI"))
    return False


def _ogg_end_problem(path: Path) -> str | None:
    """Why an Ogg file does not end like a whole stream (None when its last page is whole and
    marks the end of the stream)."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - _OGG_MAX_PAGE))
            tail = fh.read()
    except OSError as exc:
        return f"it cannot be read ({exc})"
    pos = tail.rfind(b"OggS")
    while pos >= 0:
        head = tail[pos : pos + 27]
        if len(head) == 27 and head[4] == 0:
            lacing = tail[pos + 27 : pos + 27 + head[26]]
            if len(lacing) == head[26] and pos + 27 + len(lacing) + sum(lacing) == len(tail):
                return None if head[5] & 0x04 else "its Ogg stream has no end-of-stream page"
        pos = tail.rfind(b"OggS", 0, pos)
    return "it ends inside an Ogg page"


def declared_seconds(path: str | Path, header: AudioHeader | None = None) -> float | None:
    """Length the file's header declares, in seconds; None when it declares none reliably.

    WAV: the ``data`` chunk size; MP3: only with a Xing/Info/VBRI frame count; Ogg: None (its
    length is read from the last page left in the file); others (FLAC, AIFF, ...): libsndfile's
    frame count (0 = unknown).

    Args:
        path: the file.
        header: its open ``sf.SoundFile`` or ``sf.info`` (read here when None).
    """
    path = Path(path)
    info = header if header is not None else sf.info(str(path))
    if info.samplerate <= 0 or info.format == "OGG":
        return None
    frames: int | None = int(info.frames)
    if info.format in ("WAV", "WAVEX"):
        frames = max(frames or 0, _riff_data_frames(path) or 0)
    elif info.format == "MP3" and not _mp3_has_length_tag(path):
        frames = None
    return frames / info.samplerate if frames else None


def check_complete(
    path: str | Path, decoded_seconds: float, header: AudioHeader | None = None
) -> None:
    """Raise :class:`TruncatedAudioError` when a file decoded to its end is shorter than it
    declares: the header's length (:func:`declared_seconds`) is longer than the audio decoded
    by more than ``max(TRUNCATION_TOLERANCE_FRAMES, TRUNCATION_TOLERANCE_SECONDS)``, or an Ogg
    file does not end with the whole last page of its stream.

    Args:
        path: the file.
        decoded_seconds: audio decoded from the file's start up to where its decoder stopped.
        header: its open ``sf.SoundFile`` or ``sf.info`` (read here when None).
    """
    path = Path(path)
    try:
        info = header if header is not None else sf.info(str(path))
    except Exception as exc:
        raise AudioError(f"{path}: cannot read header ({exc})") from exc
    if info.format == "OGG":
        why = _ogg_end_problem(path)
        if why:
            raise TruncatedAudioError(path, decoded_seconds, None, why)
        return
    declared = declared_seconds(path, info)
    tol = max(TRUNCATION_TOLERANCE_FRAMES / max(info.samplerate, 1), TRUNCATION_TOLERANCE_SECONDS)
    if declared is not None and decoded_seconds + tol < declared:
        raise TruncatedAudioError(path, decoded_seconds, declared)


def list_audio_files(path: str | Path) -> list[Path]:
    """Audio files under a folder (recursively, sorted) or the file itself."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise AudioError(f"{path}: no such file or folder")
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
