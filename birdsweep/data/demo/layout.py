"""Writing the demo data set: the BirdCLEF 2025 folder layout, CSVs, Ogg audio, README and
the ``.complete`` marker; :func:`generate_demo_dataset` is the entry point."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm.auto import tqdm

from birdsweep.atomic import replace_folder
from birdsweep.data.demo.plan import _clip_counts, _community, _soundscape_stems, _train_rows
from birdsweep.data.demo.scenes import (
    CLIP_SECONDS,
    NOISE_PRESETS,
    WINDOW_SECONDS,
    _render_clip,
    _render_soundscape,
    write_window_labels,
)
from birdsweep.data.demo.species import Species, _make_species
from birdsweep.data.windows import row_id

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1  # bump when the output of a given seed changes; invalidates `.complete`
MARKER = ".complete"

TRAIN_COLUMNS = (
    "primary_label",
    "secondary_labels",
    "type",
    "filename",
    "collection",
    "rating",
    "url",
    "latitude",
    "longitude",
    "scientific_name",
    "common_name",
    "author",
    "license",
)
TAXONOMY_COLUMNS = (
    "primary_label",
    "inat_taxon_id",
    "scientific_name",
    "common_name",
    "class_name",
)

# Independent random streams: SeedSequence([seed, stream, ...]).
_S_SPECIES, _S_PLAN, _S_CLIP, _S_SOUNDSCAPE, _S_DISTRACTOR = 1, 2, 3, 4, 5
_DISTRACTOR_INDEX0 = 1_000_000  # generation indices of distractor species (never in taxonomy)


def write_ogg(path: Path, y: np.ndarray, sr: int) -> None:
    """Write mono float audio as Ogg Vorbis (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y.astype(np.float32), sr, format="OGG", subtype="VORBIS")


def generate_demo_dataset(
    out: str | Path,
    seed: int = 0,
    n_classes: int = 24,
    noise: str = "moderate",
    n_train_soundscapes: int = 6,
    n_test_soundscapes: int = 8,
    soundscape_seconds: int = 60,
    clips_per_class_max: int = 14,
    sample_rate: int = 32000,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write a synthetic BirdCLEF 2025-layout dataset into `out`.

    Args:
        out: destination folder. Written via a temporary sibling folder and renamed, with a
            `.complete` marker written last; a folder already holding a complete dataset of
            the same parameters is returned untouched.
        seed: random seed; the same seed gives identical CSVs and audio samples.
        n_classes: number of species in `taxonomy.csv` (about 1 in 4 not a bird).
        noise: soundscape difficulty, "moderate" or "hard" (see `NOISE_PRESETS`).
        n_train_soundscapes: unlabelled soundscapes in `train_soundscapes/`.
        n_test_soundscapes: labelled soundscapes in `test_soundscapes/`.
        soundscape_seconds: soundscape length, a multiple of 5 s.
        clips_per_class_max: clips of the most recorded species (long-tailed down to 1).
        sample_rate: audio sample rate in Hz.
        overwrite: regenerate even if `out` holds a dataset (only a demo dataset is replaced).
        progress: show a tqdm progress bar.

    Returns:
        The dataset folder `out`.

    Raises:
        ValueError: an argument is out of range (message names it).
        FileExistsError: `out` holds other files, or a demo dataset of other parameters
            while `overwrite` is False.
    """
    if noise not in NOISE_PRESETS:
        raise ValueError(f"noise={noise!r}: expected one of {sorted(NOISE_PRESETS)}")
    checks = [
        ("n_classes", n_classes, n_classes >= 2, ">= 2"),
        ("n_train_soundscapes", n_train_soundscapes, n_train_soundscapes >= 0, ">= 0"),
        ("n_test_soundscapes", n_test_soundscapes, n_test_soundscapes >= 1, ">= 1"),
        (
            "soundscape_seconds",
            soundscape_seconds,
            soundscape_seconds >= WINDOW_SECONDS and soundscape_seconds % WINDOW_SECONDS == 0,
            f"a positive multiple of {WINDOW_SECONDS}",
        ),
        ("clips_per_class_max", clips_per_class_max, clips_per_class_max >= 1, ">= 1"),
        ("sample_rate", sample_rate, sample_rate >= 8000, ">= 8000"),
    ]
    for key, value, ok, need in checks:
        if not ok:
            raise ValueError(f"{key}={value!r} is out of range; it must be {need}")
    params = {
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "n_classes": int(n_classes),
        "noise": noise,
        "n_train_soundscapes": int(n_train_soundscapes),
        "n_test_soundscapes": int(n_test_soundscapes),
        "soundscape_seconds": int(soundscape_seconds),
        "clips_per_class_max": int(clips_per_class_max),
        "sample_rate": int(sample_rate),
    }
    out = Path(out)
    if not overwrite and _marker_matches(out, params):
        log.info("demo dataset already complete at %s (seed=%d, noise=%s)", out, seed, noise)
        return out
    _check_replaceable(out, overwrite)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    t0 = time.perf_counter()
    try:
        stats = _generate(tmp, params, progress)
        (tmp / MARKER).write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
        if not overwrite and _marker_matches(out, params):  # a concurrent run finished first
            shutil.rmtree(tmp)
            return out
        if out.exists():
            _check_replaceable(out, overwrite)
        replace_folder(tmp, out, out.parent / f".{out.name}.old-{os.getpid()}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "demo dataset written to %s in %.1f s: %d species, %d clips, %d+%d soundscapes, "
        "%d/%d species in test soundscapes",
        out,
        time.perf_counter() - t0,
        n_classes,
        stats["clips"],
        n_train_soundscapes,
        n_test_soundscapes,
        stats["test_species"],
        n_classes,
    )
    return out


def _marker_matches(out: Path, params: dict) -> bool:
    marker = out / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()) == params
    except (OSError, json.JSONDecodeError):
        return False


def _check_replaceable(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder; choose another demo-data out")
    if not any(out.iterdir()):
        return
    is_demo = (out / MARKER).is_file()
    if not overwrite:
        what = "a demo dataset of other parameters" if is_demo else "other files"
        raise FileExistsError(
            f"{out}: already holds {what}; pass overwrite=True (--overwrite) or choose "
            "another output folder"
        )
    if not is_demo:
        raise FileExistsError(
            f"{out}: holds files but no {MARKER} marker, so it is not a demo dataset; refusing "
            "to delete it. Choose another output folder"
        )


def _generate(root: Path, p: dict, progress: bool) -> dict:
    """Write every file of the dataset into `root` (marker excluded); returns counts."""
    seed, sr, secs = p["seed"], p["sample_rate"], p["soundscape_seconds"]
    preset = NOISE_PRESETS[p["noise"]]
    used: set[str] = set()
    species: list[Species] = []
    for i in range(p["n_classes"]):
        species.append(_make_species(seed, _S_SPECIES, i, species, used))
    distractors: list[Species] = []
    if preset.distractor_prob > 0:
        for j in range(max(2, math.ceil(p["n_classes"] / 4))):
            idx = _DISTRACTOR_INDEX0 + j
            distractors.append(_make_species(seed, _S_DISTRACTOR, idx, species, set(used)))
    species.sort(key=lambda s: s.primary_label)  # taxonomy order = submission column order
    labels = [s.primary_label for s in species]

    plan = np.random.default_rng([seed, _S_PLAN])
    counts = _clip_counts(len(species), p["clips_per_class_max"], plan)
    rows = _train_rows(species, counts, plan)
    train_stems, test_stems = _soundscape_stems(
        p["n_train_soundscapes"], p["n_test_soundscapes"], plan
    )
    order = [species[i] for i in plan.permutation(len(species))]
    test_must = {stem: order[j :: len(test_stems)] for j, stem in enumerate(test_stems)}
    communities = {
        stem: _community(species, test_must.get(stem, []), plan)
        for stem in train_stems + test_stems
    }

    # --- CSVs and README (cheap, deterministic)
    pd.DataFrame(
        [{c: getattr(s, c) for c in TAXONOMY_COLUMNS} for s in species],
        columns=list(TAXONOMY_COLUMNS),
    ).to_csv(root / "taxonomy.csv", index=False)
    pd.DataFrame(
        [{c: r[c] for c in TRAIN_COLUMNS} for r in rows], columns=list(TRAIN_COLUMNS)
    ).to_csv(root / "train.csv", index=False)
    row_ids = [
        row_id(stem, end)
        for stem in test_stems
        for end in range(WINDOW_SECONDS, secs + 1, WINDOW_SECONDS)
    ]
    sub = pd.DataFrame(1.0 / len(labels), index=range(len(row_ids)), columns=labels)
    sub.insert(0, "row_id", row_ids)
    sub.to_csv(root / "sample_submission.csv", index=False)
    _write_readme(root, p, species, distractors, len(rows))

    # --- audio, one job per file, each with its own random stream
    def clip_job(r: dict) -> None:
        sp: Species = r["_species"]
        rng = np.random.default_rng([seed, _S_CLIP, sp.index, r["_clip"]])
        lo, hi, median = CLIP_SECONDS
        seconds = float(np.clip(np.exp(rng.normal(np.log(median), 0.6)), lo, hi))
        y = _render_clip(sp, r["_secondary"], seconds, sr, rng)
        write_ogg(root / "train_audio" / r["filename"], y, sr)

    def soundscape_job(split: int, k: int, stem: str, folder: str):
        rng = np.random.default_rng([seed, _S_SOUNDSCAPE, split, k])
        must = test_must.get(stem, [])
        y, events = _render_soundscape(secs, sr, rng, communities[stem], must, distractors, preset)
        write_ogg(root / folder / f"{stem}.ogg", y, sr)
        return events

    (root / "train_soundscapes").mkdir()
    (root / "test_soundscapes").mkdir()
    # longest jobs first (soundscapes) so the pool ends evenly
    jobs: list[Callable[[], object]] = [
        lambda k=k, s=s: soundscape_job(1, k, s, "test_soundscapes")
        for k, s in enumerate(test_stems)
    ]
    jobs += [
        lambda k=k, s=s: soundscape_job(0, k, s, "train_soundscapes")
        for k, s in enumerate(train_stems)
    ]
    jobs += [lambda r=r: clip_job(r) for r in rows]
    workers = max(1, min(4, os.cpu_count() or 1))
    with (
        ThreadPoolExecutor(workers) as pool,
        tqdm(total=len(jobs), desc="demo data", unit="file", disable=not progress) as bar,
    ):
        results = []
        for res in pool.map(lambda job: job(), jobs):
            results.append(res)
            bar.update(1)
    test_events = results[: len(test_stems)]

    truth = write_window_labels(root, row_ids, labels, test_events, secs)
    present = int((truth.sum(0) > 0).sum())
    if present < 0.6 * len(labels):
        log.warning(
            "only %d of %d species occur in the test soundscapes; raise n_test_soundscapes or "
            "soundscape_seconds for a meaningful macro AUC",
            present,
            len(labels),
        )
    return {"clips": len(rows), "test_species": present}


def _write_readme(
    root: Path, p: dict, species: list[Species], distractors: list[Species], n_clips: int
) -> None:
    lines = [
        "# birdsweep demo dataset (synthetic)",
        "",
        "Every sound here is synthetic: generated by `birdsweep.data.demo.generate_demo_dataset`",
        f"(generator version {p['generator_version']}). No real recordings; names, ids, authors",
        "and URLs are made up. The layout and columns follow the BirdCLEF 2025 Kaggle data.",
        "",
        f"- seed: {p['seed']}",
        f"- noise: {p['noise']}",
        f"- species: {p['n_classes']}; training clips: {n_clips}",
        f"- soundscapes: {p['n_train_soundscapes']} train (unlabelled), "
        f"{p['n_test_soundscapes']} test, {p['soundscape_seconds']} s each",
        f"- sample rate: {p['sample_rate']} Hz, mono Ogg Vorbis",
        "",
        "`test_soundscapes_labels.csv` is the ground truth of `test_soundscapes/` in the shape of",
        "`sample_submission.csv` (row_id = `<stem>_<window end second>`, 1 = species audible in",
        "that 5 s window). `rating` 0.0 means unrated (iNat / CSA), as in BirdCLEF.",
        "",
        "| primary_label | class_name | call family | near-copy of |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {s.primary_label} | {s.class_name} | {s.family} | {s.sibling_of} |" for s in species
    ]
    if distractors:
        fams = ", ".join(sorted({d.family for d in distractors}))
        lines += ["", f"Hard noise: {len(distractors)} unlabelled distractor species ({fams})."]
    (root / "README.md").write_text("\n".join(lines) + "\n")
