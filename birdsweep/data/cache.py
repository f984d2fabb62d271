"""Decoded-audio cache: every file is decoded once into one memory-mapped float16 array.

Layout of a cache folder::

    audio.f16     all clips back to back (float16, mono, at the cache's sample rate)
    index.csv     path, size, mtime_ns, offset, length, error (one row per file)
    meta.json     sample_rate, max_seconds, version

A file whose size or modification time changed since it was cached is decoded again; an
unchanged one is copied over from the previous cache. Files that cannot be decoded, or that
decode shorter than they declare (truncated), keep a row with ``length == 0`` and the reason in
``error``: one bad file never stops a run. A cache of an older ``version`` (before truncated
files were refused) is reused after a header check of its decoded files (no decoding): those
that turn out truncated are decoded again, and so refused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock
from tqdm.auto import tqdm

from birdsweep.atomic import atomic_write_text
from birdsweep.data.audio import AudioError, check_complete, load_audio

log = logging.getLogger(__name__)

DTYPE = np.float16
CACHE_VERSION = 2  # 2: truncated files are refused (1, unversioned, cached them short)


def file_stat(path: str) -> tuple[int, int]:
    """``(size, mtime_ns)`` of a file, ``(-1, -1)`` when it cannot be read (what the cache
    and the data fingerprint key on)."""
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


class AudioCache:
    """Read-only view of a built cache: ``cache[path]`` returns the decoded clip.

    Args:
        folder: a cache folder written by :func:`build_audio_cache`.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        meta = json.loads((self.folder / "meta.json").read_text())
        self.sample_rate: int = int(meta["sample_rate"])
        self.index = pd.read_csv(self.folder / "index.csv", keep_default_na=False)
        self._rows = {p: i for i, p in enumerate(self.index["path"])}
        total = int(self.index["length"].sum())
        self._data = (
            np.memmap(self.folder / "audio.f16", dtype=DTYPE, mode="r", shape=(total,))
            if total
            else np.zeros(0, dtype=DTYPE)
        )

    def __contains__(self, path: str) -> bool:
        return path in self._rows and self.length(path) > 0

    def length(self, path: str) -> int:
        """Number of cached samples of ``path`` (0 for a file that failed to decode)."""
        return int(self.index.at[self._rows[path], "length"])

    def error(self, path: str) -> str:
        """Why ``path`` could not be decoded ('' when it was)."""
        return str(self.index.at[self._rows[path], "error"])

    def get(self, path: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples ``start:stop`` of a cached clip as float32."""
        row = self._rows[path]
        off = int(self.index.at[row, "offset"])
        n = int(self.index.at[row, "length"])
        stop = n if stop is None else min(stop, n)
        return np.asarray(self._data[off + start : off + stop], dtype=np.float32)

    def __getitem__(self, path: str) -> np.ndarray:
        return self.get(path)

    @property
    def failed(self) -> pd.DataFrame:
        """Rows of files that could not be decoded (path, error)."""
        return self.index.loc[self.index["length"] == 0, ["path", "error"]]


def _decode(args: tuple[str, int, float | None]) -> tuple[np.ndarray | None, str]:
    path, sr, max_seconds = args
    try:
        wave = load_audio(path, sr, max_seconds=max_seconds)
    except AudioError as exc:
        return None, str(exc)
    peak = float(np.abs(wave).max())
    if peak == 0.0:
        return None, f"{path}: silent (all samples are zero)"
    return wave.astype(DTYPE), ""


def _cached_short(path: str, length: int, sample_rate: int, max_seconds: float | None) -> bool:
    """Whether a clip an older cache decoded to ``length`` samples is a truncated file."""
    if not length:
        return False  # already a bad file
    if max_seconds is not None and length >= int(max_seconds * sample_rate) - 1:
        return False  # decoding stopped at max_seconds, not at the file's end
    try:
        check_complete(path, length / sample_rate)
    except AudioError:
        return True
    return False


def build_audio_cache(
    paths: Sequence[str],
    folder: str | Path,
    sample_rate: int,
    max_seconds: float | None = None,
    num_workers: int = 2,
    progress: bool = True,
) -> AudioCache:
    """Decode ``paths`` into a cache folder, re-using what an earlier build already decoded.

    Args:
        paths: audio files (absolute paths are best: they are the cache keys).
        folder: cache folder (created; replaced atomically when anything changed).
        sample_rate: decode/resample to this rate.
        max_seconds: keep at most the first ``max_seconds`` of each file (None = all).
        num_workers: decoding threads (libsndfile releases the GIL).
        progress: show a progress bar.

    Returns:
        The opened :class:`AudioCache`.

    Processes building the same folder at once (fold workers of a fresh run) take turns on a
    lock file beside it (``<folder>.lock``): the later ones reuse what the first decoded.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(folder.with_name(folder.name + ".lock")):
        return _build_locked(paths, folder, sample_rate, max_seconds, num_workers, progress)


def _build_locked(
    paths: Sequence[str],
    folder: Path,
    sample_rate: int,
    max_seconds: float | None,
    num_workers: int,
    progress: bool,
) -> AudioCache:
    paths = list(dict.fromkeys(str(p) for p in paths))
    meta = {"sample_rate": int(sample_rate), "max_seconds": max_seconds, "version": CACHE_VERSION}
    old: AudioCache | None = None
    recheck = False  # an older cache: its decoded files get the truncation check first
    if (folder / "meta.json").is_file() and (folder / "index.csv").is_file():
        try:
            candidate = AudioCache(folder)
            old_meta = json.loads((folder / "meta.json").read_text())
            if old_meta == meta:
                old = candidate
            elif {**old_meta, "version": CACHE_VERSION} == meta and "version" not in old_meta:
                old, recheck = candidate, True
        except Exception as exc:  # a broken cache is rebuilt, never trusted
            log.warning("%s: unreadable cache (%s); rebuilding", folder, exc)

    stats = {p: file_stat(p) for p in paths}
    reuse: dict[str, int] = {}
    if old is not None:
        for p in paths:
            row = old._rows.get(p)
            if row is None:
                continue
            r = old.index.iloc[row]
            if (int(r["size"]), int(r["mtime_ns"])) != stats[p]:
                continue
            if recheck and _cached_short(p, int(r["length"]), sample_rate, max_seconds):
                continue  # decoded again below: refused as truncated
            reuse[p] = row
        if len(reuse) == len(paths) and len(old.index) == len(paths):
            if recheck:  # nothing truncated: the old cache holds, under the new version
                atomic_write_text(folder / "meta.json", json.dumps(meta))
            return old

    todo = [p for p in paths if p not in reuse]
    log.info("audio cache %s: %d file(s) to decode, %d reused", folder, len(todo), len(reuse))
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rows = []
    offset = 0
    with (
        open(tmp / "audio.f16", "wb") as out,
        ThreadPoolExecutor(max(1, num_workers)) as pool,
    ):
        results: Iterable = pool.map(_decode, [(p, sample_rate, max_seconds) for p in todo])
        bar = tqdm(
            total=len(todo), desc="decode audio", unit="file", disable=not progress or not todo
        )
        it = iter(results)
        for p in paths:
            if p in reuse:
                r = old.index.iloc[reuse[p]]  # type: ignore[union-attr]
                wave = old.get(p).astype(DTYPE) if int(r["length"]) else None  # type: ignore[union-attr]
                err = str(r["error"])
            else:
                wave, err = next(it)
                bar.update(1)
            n = 0 if wave is None else len(wave)
            if wave is not None:
                out.write(wave.tobytes())
            else:
                log.warning("skipping %s", err)
            size, mtime = stats[p]
            rows.append((p, size, mtime, offset, n, err))
            offset += n
        bar.close()
    pd.DataFrame(rows, columns=["path", "size", "mtime_ns", "offset", "length", "error"]).to_csv(
        tmp / "index.csv", index=False
    )
    (tmp / "meta.json").write_text(json.dumps(meta))
    old = None  # release the memmap before replacing its file
    backup = folder.with_name(folder.name + ".old")
    shutil.rmtree(backup, ignore_errors=True)
    if folder.exists():
        folder.rename(backup)
    tmp.rename(folder)
    shutil.rmtree(backup, ignore_errors=True)
    return AudioCache(folder)
