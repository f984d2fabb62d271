"""Turn ``cfg.data`` into ready-to-train inputs: metadata, decoded cache, folds, soundscapes."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from birdsweep.data.audio import list_audio_files
from birdsweep.data.cache import AudioCache, build_audio_cache, file_stat
from birdsweep.data.folds import assign_folds
from birdsweep.data.metadata import DataError, Metadata, load_metadata
from birdsweep.data.windows import parse_row_id, row_start, window_samples

log = logging.getLogger(__name__)


@dataclass
class SoundscapeSet:
    """Labelled soundscape windows (e.g. the demo's test soundscapes)."""

    cache: AudioCache
    row_ids: list[str]
    items: list[tuple[str, int]]  # (path, start sample) per window
    targets: np.ndarray  # [N, C] in label order
    folds: np.ndarray | None = None  # fold id per window (pseudo-labels: by soundscape file)

    @property
    def files(self) -> list[str]:
        """The recording of each window (for recording-level context)."""
        return [path for path, _ in self.items]


@dataclass
class PreparedData:
    """Everything the K-fold loop needs from the data folder."""

    meta: Metadata
    cache: AudioCache
    clips: pd.DataFrame  # usable training clips (decoded), with a ``fold`` column
    sample_rate: int
    bad_files: pd.DataFrame = field(default_factory=pd.DataFrame)
    soundscapes: SoundscapeSet | None = None
    pseudo: SoundscapeSet | None = None
    noise_paths: list[str] = field(default_factory=list)
    noise_cache_dir: Path | None = None
    noise_max_seconds: float | None = None

    def fingerprint(self) -> str:
        """Hash of what training reads from the data: the label order, each clip's file,
        labels, rating, fold, size and mtime, the noise files and the pseudo-labels. Folds are
        reused only when it matches (relabelled, added, dropped or edited clips retrain)."""
        clips = self.clips[["path", "label_idx", "secondary_idx", "rating", "fold"]]
        parts: list[Any] = [self.meta.labels, self.sample_rate]
        parts += [[*row, *file_stat(row[0])] for row in clips.itertuples(index=False, name=None)]
        parts += [[p, *file_stat(p)] for p in self.noise_paths]
        if self.pseudo is not None:
            parts += [self.pseudo.row_ids, self.pseudo.targets.round(6).tolist()]
            parts += [[p, *file_stat(p)] for p in sorted({p for p, _ in self.pseudo.items})]
        blob = json.dumps(parts, default=str).encode()
        return hashlib.sha1(blob).hexdigest()[:16]

    def noise_clips(self, workers: int = 2, progress: bool = True) -> list[np.ndarray]:
        """Decode (once, cached) the unlabelled soundscapes used as background noise."""
        if not self.noise_paths or self.noise_cache_dir is None:
            return []
        cache = build_audio_cache(
            self.noise_paths,
            self.noise_cache_dir,
            self.sample_rate,
            self.noise_max_seconds,
            workers,
            progress,
        )
        return [cache[p] for p in self.noise_paths if p in cache]


def _key(*parts: Any) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:12]


def ensure_dataset(data_cfg: Any, progress: bool = True) -> Path:
    """Return ``data.root``, generating the demo set there first when ``data.demo`` is set."""
    root = Path(str(data_cfg.root)).expanduser().absolute()
    demo = data_cfg.get("demo")
    if demo:
        from birdsweep.data.demo import generate_demo_dataset

        generate_demo_dataset(root, **dict(demo), progress=progress)
    return root


def load_soundscape_labels(
    labels_csv: Path, audio_dir: Path, labels: list[str]
) -> tuple[list[str], list[Path], list[int], np.ndarray]:
    """Read a ``row_id`` + label-columns ground truth and find each row's soundscape file.

    Returns:
        row ids, soundscape path per row, window end second per row, ``[N, C]`` targets in
        ``labels`` order (label columns absent from the file count as 0).
    """
    df = pd.read_csv(labels_csv)
    if "row_id" not in df.columns:
        raise DataError(f"{labels_csv}: no row_id column")
    unknown = [c for c in df.columns if c != "row_id" and c not in labels]
    if unknown:
        log.warning("%s: %d label column(s) not in taxonomy.csv ignored", labels_csv, len(unknown))
    files = {p.stem: p for p in list_audio_files(audio_dir)} if audio_dir.is_dir() else {}
    paths, ends = [], []
    for rid in df["row_id"].astype(str):
        parsed = parse_row_id(rid)
        if parsed is None:
            raise DataError(f"{labels_csv}: row_id {rid!r} is not '<soundscape>_<end second>'")
        stem, end = parsed
        if stem not in files:
            raise DataError(f"{labels_csv}: no audio file for soundscape {stem!r} in {audio_dir}")
        paths.append(files[stem])
        ends.append(end)
    y = np.zeros((len(df), len(labels)), dtype=np.float32)
    for j, lab in enumerate(labels):
        if lab in df.columns:
            y[:, j] = df[lab].to_numpy(dtype=np.float32)
    return df["row_id"].astype(str).tolist(), paths, ends, y


def load_soundscape_set(
    labels_csv: Path,
    audio_dir: Path,
    labels: list[str],
    data_cfg: Any,
    cache_root: Path,
    progress: bool = True,
) -> SoundscapeSet:
    """Windows of a ``row_id`` + label-columns table (ground truth or pseudo-labels), decoded
    into the cache; windows whose soundscape cannot be decoded are dropped with a warning."""
    sr = int(data_cfg.sample_rate)
    row_ids, paths, ends, y = load_soundscape_labels(labels_csv, audio_dir, labels)
    uniq = sorted({str(p) for p in paths})
    cache = build_audio_cache(
        uniq,
        cache_root / f"soundscapes_{_key(audio_dir, sr)}",
        sr,
        None,
        int(data_cfg.get("decode_workers", 2)),
        progress,
    )
    win = window_samples(data_cfg.window_seconds, sr)
    items = [(str(p), row_start(e, win, sr)) for p, e in zip(paths, ends, strict=True)]
    keep = [i for i, (p, _) in enumerate(items) if p in cache]
    if len(keep) < len(items):
        log.warning(
            "%s: %d window(s) of undecodable soundscapes dropped",
            labels_csv,
            len(items) - len(keep),
        )
    return SoundscapeSet(cache, [row_ids[i] for i in keep], [items[i] for i in keep], y[keep])


def prepare_data(
    data_cfg: Any, cache_dir: str | Path, seed: int = 0, progress: bool = True
) -> PreparedData:
    """Load metadata, decode audio into the cache, split folds and find labelled soundscapes.

    Args:
        data_cfg: the ``data`` config group.
        cache_dir: ``paths.cache_dir``.
        seed: selects the noise soundscapes subset.
        progress: progress bars.

    Returns:
        A :class:`PreparedData`.
    """
    root = ensure_dataset(data_cfg, progress)
    sr = int(data_cfg.sample_rate)
    meta = load_metadata(root, strict_labels=bool(data_cfg.get("strict_labels", True)))
    cache_root = Path(cache_dir).expanduser().absolute() / "audio"
    max_s = data_cfg.get("max_clip_seconds")
    workers = int(data_cfg.get("decode_workers", 2))
    cache = build_audio_cache(
        meta.train["path"].tolist(),
        cache_root / f"train_{_key(root, sr, max_s)}",
        sr,
        max_s,
        workers,
        progress,
    )
    ok = meta.train["path"].map(lambda p: p in cache)
    bad = cache.failed[cache.failed["path"].isin(meta.train["path"])]
    if len(bad):
        log.warning(
            "%d of %d training clip(s) could not be decoded and are skipped, e.g. %s",
            len(bad),
            len(meta.train),
            bad["error"].iloc[0],
        )
    clips = meta.train[ok].reset_index(drop=True)
    if clips.empty:
        raise DataError(f"{root}: none of the {len(meta.train)} training clips could be decoded")
    n_folds = int(data_cfg.n_folds)
    clips["fold"] = assign_folds(clips["label_idx"].to_numpy(), n_folds, int(data_cfg.fold_seed))

    soundscapes = None
    labels_csv = Path(str(data_cfg.get("soundscape_labels") or ""))
    if data_cfg.get("soundscape_labels") and labels_csv.is_file():
        soundscapes = load_soundscape_set(
            labels_csv,
            Path(str(data_cfg.soundscape_dir)),
            meta.labels,
            data_cfg,
            cache_root,
            progress,
        )
        log.info("%d labelled soundscape windows from %s", len(soundscapes.items), labels_csv)

    pseudo = None
    if data_cfg.get("pseudo_labels"):
        pseudo_csv = Path(str(data_cfg.pseudo_labels))
        if not pseudo_csv.is_file():
            raise DataError(
                f"data.pseudo_labels: {pseudo_csv} not found; write it with `birdsweep pseudo-label`"
            )
        pseudo = load_soundscape_set(
            pseudo_csv,
            Path(str(data_cfg.pseudo_audio_dir)),
            meta.labels,
            data_cfg,
            cache_root,
            progress,
        )
        files = sorted({p for p, _ in pseudo.items})
        pseudo.folds = np.array(  # whole soundscapes per fold: a file's windows stay together
            [files.index(p) % n_folds for p, _ in pseudo.items], dtype=int
        )
        log.info("%d pseudo-labelled windows from %d soundscapes", len(pseudo.items), len(files))

    noise_paths: list[str] = []
    noise_dir = data_cfg.get("noise_soundscapes_dir")
    if noise_dir and Path(str(noise_dir)).is_dir():
        files = [str(p) for p in list_audio_files(str(noise_dir))]
        n_max = data_cfg.get("noise_soundscapes_max")
        if n_max is not None and len(files) > int(n_max):
            pick = np.random.default_rng(seed).choice(len(files), int(n_max), replace=False)
            files = [files[i] for i in sorted(pick)]
        noise_paths = files
    return PreparedData(
        meta=meta,
        cache=cache,
        clips=clips,
        sample_rate=sr,
        bad_files=bad.reset_index(drop=True),
        soundscapes=soundscapes,
        pseudo=pseudo,
        noise_paths=noise_paths,
        noise_cache_dir=cache_root / f"noise_{_key(noise_dir, sr, len(noise_paths), seed)}",
        noise_max_seconds=data_cfg.get("noise_max_seconds"),
    )
