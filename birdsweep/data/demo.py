"""Synthetic BirdCLEF 2025-layout demo dataset.

:func:`generate_demo_dataset` writes a small folder with exactly the files and columns of the
BirdCLEF 2025 Kaggle data (``taxonomy.csv``, ``train.csv``, ``train_audio/``,
``train_soundscapes/``, ``sample_submission.csv``) plus what Kaggle keeps hidden: labelled
``test_soundscapes/`` with ``test_soundscapes_labels.csv`` (the shape of a submission, 0/1).

Every species is a random *call family* (whistle, FM sweep, trill, frog pulse train, insect
buzz, mammal grunt, ...) with random frequency / rate / duration parameters; some species are
deliberate near-copies of others (same family, nearby pitch) so the task is not trivial.
Training clips are clean focal recordings; soundscapes mix wind, rain, coloured noise (and, at
``noise="hard"``, insect choruses and distractor species) with overlapping calls at low SNR.

Randomness is keyed per item (``numpy`` ``SeedSequence([seed, stream, species, item])``), so a
species' sound and a clip's audio do not change when other species are added.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from scipy import fft as sfft
from scipy.signal import fftconvolve
from tqdm.auto import tqdm

from birdsweep.atomic import atomic_write_text, replace_folder

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1  # bump when the output of a given seed changes; invalidates `.complete`
WINDOW_SECONDS = 5  # BirdCLEF scoring window; row_id = <stem>_<window end second>
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


@dataclass(frozen=True)
class NoisePreset:
    """How hard the soundscapes are.

    Attributes:
        snr_db: range of per-bout call SNR against the whole background (dB, uniform).
        species_per_window: probabilities of 0, 1, 2, 3 ... labelled species starting a bout
            in a window.
        distractor_prob: chance per window of a bout of an unlabelled distractor species.
        chorus_bands: (min, max) number of continuous insect-chorus noise bands.
    """

    snr_db: tuple[float, float]
    species_per_window: tuple[float, ...]
    distractor_prob: float
    chorus_bands: tuple[int, int]


NOISE_PRESETS: dict[str, NoisePreset] = {
    "moderate": NoisePreset((-5.0, 20.0), (0.2, 0.35, 0.3, 0.15), 0.0, (0, 0)),
    "hard": NoisePreset((-10.0, 10.0), (0.2, 0.35, 0.3, 0.15), 0.5, (1, 3)),
}

# Within-species variation of each rendered call (log-normal sd of the factor).
CALL_JITTER = {"pitch": 0.03, "duration": 0.12, "rate": 0.06, "amplitude": 0.25}
CLIP_SNR_DB = (15.0, 35.0)  # focal clips: calls vs background
CLIP_SECONDS = (2.0, 30.0, 6.0)  # (min, max, median) of the log-normal clip length
SECONDARY_CLIP_FRACTION = 0.1  # share of clips carrying a call of a secondary species
MAMMAL_FMAX = 1200.0  # mammal harmonics stop here (low grunts / howls / barks)
SIBLING_PROB = 0.3  # chance a species is a near-copy of an earlier one of its class


# --------------------------------------------------------------------------- signal helpers


def _n(seconds: float, sr: int) -> int:
    return max(1, int(round(seconds * sr)))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)) + 1e-20))


def _env(n: int, sr: int, attack: float = 0.01, release: float = 0.02) -> np.ndarray:
    """Raised-cosine attack/release envelope of length n."""
    e = np.ones(n)
    a = min(n // 2, _n(attack, sr))
    r = min(n - a, _n(release, sr))
    e[:a] = 0.5 - 0.5 * np.cos(np.pi * np.arange(a) / a)
    e[n - r :] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(r) + 1) / r)
    return e


def _harmonics(
    freq: np.ndarray,
    amps: list[float] | np.ndarray,
    sr: int,
    rng: np.random.Generator,
    fmax: float = np.inf,
) -> np.ndarray:
    """Sum of harmonics k*freq (k = 1..len(amps)) below min(fmax, 0.45*sr); freq in Hz."""
    phase = 2 * np.pi * np.cumsum(freq) / sr
    out = np.zeros_like(phase)
    top = float(np.max(freq))
    for k, a in enumerate(amps, start=1):
        if (k == 1 or k * top < min(fmax, 0.45 * sr)) and a > 0:
            out += a * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return out


def _tone(freq: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    return _harmonics(np.clip(freq, 20.0, 0.45 * sr), [1.0], sr, rng)


def _shaped_noise(
    n: int, sr: int, rng: np.random.Generator, gain: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """White noise shaped in the frequency domain by gain(freqs), unit RMS.

    The FFT runs on a fast length (>= n) and is cut back to n samples.
    """
    m = sfft.next_fast_len(n, real=True)
    spec = sfft.rfft(rng.standard_normal(m))
    spec *= gain(sfft.rfftfreq(m, 1.0 / sr))
    x = sfft.irfft(spec, m)[:n]
    return x / _rms(x)


def _band_noise(n: int, fc: float, bw: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-shaped band of noise (centre fc, ~bw wide), unit RMS."""
    fc = min(fc, 0.45 * sr)
    return _shaped_noise(n, sr, rng, lambda f: np.exp(-0.5 * ((f - fc) / max(bw / 2, 1.0)) ** 2))


def _coloured_noise(n: int, beta: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """1/f^beta noise above 20 Hz, unit RMS."""
    return _shaped_noise(n, sr, rng, lambda f: np.maximum(f, 20.0) ** (-beta / 2))


def _gate(n: int, sr: int, rate: float, note: float) -> tuple[np.ndarray, np.ndarray]:
    """Pulse gate: notes of `note` s repeated at `rate` Hz; returns (gate, position in note 0..1)."""
    t = np.arange(n) / sr
    pos = np.mod(t * rate, 1.0) / rate  # seconds into the current period
    inside = pos < note
    frac = np.clip(pos / note, 0.0, 1.0)
    return np.where(inside, np.sin(np.pi * frac) ** 2, 0.0), frac


def _smooth_random(n: int, sr: int, period: float, sd: float, rng: np.random.Generator):
    """Slowly varying positive envelope: log-normal control points every `period` s."""
    k = int(n / sr / period) + 2
    pts = np.exp(rng.normal(0.0, sd, k))
    return np.interp(np.arange(n) / sr / period, np.arange(k), pts)


def _add(y: np.ndarray, x: np.ndarray, start: int) -> None:
    """Add x into y at sample `start`, clipped to y's bounds."""
    if start >= len(y) or start + len(x) <= 0:
        return
    a, b = max(start, 0), min(start + len(x), len(y))
    y[a:b] += x[a - start : b - start]


# ----------------------------------------------------------------------------- call families
# Each family: the taxon class it belongs to, parameter ranges (lo, hi; log-uniform for
# frequencies/rates/durations, uniform otherwise) and a synthesiser. Parameter naming matters:
# keys starting with "f" are frequencies (pitch-jittered together), "dur"/"note" durations,
# "rate" repetition/modulation rates, "gap" the mean silence between calls in a sequence.

Synth = Callable[[dict, np.random.Generator, int], np.ndarray]


@dataclass(frozen=True)
class CallFamily:
    """A kind of animal call: its taxon class, parameter ranges and synthesiser."""

    class_name: str
    ranges: dict[str, tuple[float, float]]
    synth: Synth
    log_keys: tuple[str, ...] = field(default=("f0", "fc", "bw", "rate", "dur", "note", "gap"))


def _syn_whistle(p, rng, sr):
    n = _n(p["dur"], sr)
    t = np.arange(n) / sr
    f = p["f0"] * (1 + p["vib"] * np.sin(2 * np.pi * p["rate"] * t))
    return _tone(f, sr, rng) * _env(n, sr, 0.03, 0.06)


def _syn_sweep(direction: float) -> Synth:
    def synth(p, rng, sr):
        n = _n(p["dur"], sr)
        t = np.arange(n) / n
        f = p["f0"] * p["span"] ** (direction * t)
        return _harmonics(f, [1.0, p["h2"]], sr, rng) * _env(n, sr, 0.01, 0.03)

    return synth


def _syn_harmonic_stack(p, rng, sr):
    n = _n(p["dur"], sr)
    t = np.arange(n) / n
    f = p["f0"] * (1 + p["bend"] * t)
    amps = np.arange(1, int(round(p["n_harm"])) + 1) ** -p["tilt"]
    return _harmonics(f, amps, sr, rng) * _env(n, sr, 0.02, 0.05)


def _syn_trill(p, rng, sr):
    n = _n(p["dur"], sr)
    gate, frac = _gate(n, sr, p["rate"], p["note"])
    f = p["f0"] * (1 - p["sweep"] * frac)
    return _tone(f, sr, rng) * gate * _env(n, sr, 0.05, 0.1)


def _syn_descending_trill(p, rng, sr):
    n = _n(p["dur"], sr)
    gate, frac = _gate(n, sr, p["rate"], p["note"])
    f = p["f0"] * (1 - p["drop"] * np.arange(n) / n) * (1 - 0.1 * frac)
    return _tone(f, sr, rng) * gate * np.linspace(1.0, 0.6, n)


def _syn_warble(p, rng, sr):
    n = _n(p["dur"], sr)
    t = np.arange(n) / sr
    f = p["f0"] * (1 + p["depth"] * np.sin(2 * np.pi * p["rate"] * t + rng.uniform(0, 6.28)))
    return _harmonics(f, [1.0, p["h2"]], sr, rng) * _env(n, sr, 0.03, 0.05)


def _syn_two_note(p, rng, sr):
    a = _n(p["note"], sr)
    g = _n(p["pause"], sr)
    n1 = _tone(np.full(a, p["f0"]), sr, rng) * _env(a, sr, 0.02, 0.04)
    n2 = _tone(np.full(a, p["f0"] * p["interval"]), sr, rng) * _env(a, sr, 0.02, 0.04)
    return np.concatenate([n1, np.zeros(g), n2])


def _syn_drum_roll(p, rng, sr):
    n = _n(p["dur"], sr)
    gate, _ = _gate(n, sr, p["rate"], p["note"])
    decay = np.exp(-np.arange(n) / sr / p["decay"])
    return _band_noise(n, p["fc"], p["bw"], sr, rng) * gate * decay


def _syn_hoot(p, rng, sr):
    n = _n(p["dur"], sr)
    t = np.arange(n) / n
    f = p["f0"] * (1 + 0.05 * np.sin(np.pi * t))
    return _harmonics(f, [1.0, p["h2"], p["h2"] / 3], sr, rng) * _env(n, sr, 0.06, 0.12)


def _syn_nasal_caw(p, rng, sr):
    n = _n(p["dur"], sr)
    f = np.full(n, p["f0"]) * (1 + 0.05 * rng.standard_normal(n).cumsum() / np.sqrt(n))
    amps = np.ones(int(round(p["n_harm"])))
    rough = 1 + p["rough"] * _band_noise(n, 60.0, 80.0, sr, rng).clip(-1.5, 1.5)
    return _harmonics(f, amps, sr, rng) * rough * _env(n, sr, 0.02, 0.05)


def _syn_buzzy_note(p, rng, sr):
    n = _n(p["dur"], sr)
    t = np.arange(n) / sr
    am = 0.5 + 0.5 * np.sin(2 * np.pi * p["rate"] * t)
    return _band_noise(n, p["fc"], p["bw"], sr, rng) * am * _env(n, sr, 0.03, 0.05)


def _syn_frog_pulse_train(p, rng, sr):
    n = _n(p["dur"], sr)
    gate, _ = _gate(n, sr, p["rate"], p["note"])
    amps = 0.6 ** np.arange(int(round(p["n_harm"])))
    return _harmonics(np.full(n, p["f0"]), amps, sr, rng) * gate * _env(n, sr, 0.02, 0.05)


def _syn_frog_croak(p, rng, sr):
    n = _n(p["dur"], sr)
    t = np.arange(n) / sr
    am = 0.5 + 0.5 * np.sin(2 * np.pi * p["rate"] * t) ** 2
    amps = 1.0 / np.arange(1, int(round(p["n_harm"])) + 1) ** 0.7
    return _harmonics(np.full(n, p["f0"]), amps, sr, rng) * am * _env(n, sr, 0.02, 0.05)


def _syn_frog_peep(p, rng, sr):
    n = _n(p["dur"], sr)
    f = p["f0"] * p["span"] ** (np.arange(n) / n)
    return _tone(f, sr, rng) * _env(n, sr, 0.01, 0.03)


def _syn_frog_tink(p, rng, sr):
    n = _n(p["dur"] * 4, sr)
    decay = np.exp(-np.arange(n) / sr / p["dur"])
    return _tone(np.full(n, p["f0"]), sr, rng) * decay * _env(n, sr, 0.001, 0.003)


def _syn_insect_buzz(p, rng, sr):
    n = _n(p["dur"], sr)
    t = np.arange(n) / sr
    am = 1 - p["depth"] * (0.5 + 0.5 * np.sin(2 * np.pi * p["rate"] * t))
    return _band_noise(n, p["fc"], p["bw"], sr, rng) * am * _env(n, sr, 0.2, 0.3)


def _syn_cricket_chirp(p, rng, sr):
    pulses = int(round(p["pulses"]))
    n = _n(pulses / p["rate"], sr)
    gate, _ = _gate(n, sr, p["rate"], p["note"])
    return _tone(np.full(n, p["f0"]), sr, rng) * gate


def _syn_cicada_drone(p, rng, sr):
    n = _n(p["dur"], sr)
    t = np.arange(n) / sr
    am = 0.6 + 0.4 * np.sign(np.sin(2 * np.pi * p["rate"] * t))
    swell = np.sin(np.pi * np.arange(n) / n) ** 0.5
    return _band_noise(n, p["fc"], p["bw"], sr, rng) * am * swell


def _syn_katydid_rasp(p, rng, sr):
    n = _n(p["dur"], sr)
    gate, _ = _gate(n, sr, p["rate"], p["note"])
    return _band_noise(n, p["fc"], p["bw"], sr, rng) * gate


def _syn_mammal_grunt(p, rng, sr):
    n = _n(p["dur"], sr)
    t = np.arange(n) / n
    f = p["f0"] * (1 - 0.15 * t)
    voiced = _harmonics(f, np.ones(int(round(p["n_harm"]))), sr, rng, fmax=MAMMAL_FMAX)
    breath = p["noise"] * _band_noise(n, 350.0, 500.0, sr, rng)
    return (voiced / _rms(voiced) + breath) * _env(n, sr, 0.02, 0.06)


def _syn_mammal_howl(p, rng, sr):
    n = _n(p["dur"], sr)
    t = np.arange(n) / n
    f = p["f0"] * (1 + p["arch"] * np.sin(np.pi * t))
    amps = 0.5 ** np.arange(int(round(p["n_harm"])))
    return _harmonics(f, amps, sr, rng, fmax=MAMMAL_FMAX) * _env(n, sr, 0.2, 0.4)


def _syn_mammal_bark(p, rng, sr):
    n = _n(p["dur"], sr)
    amps = 0.7 ** np.arange(int(round(p["n_harm"])))
    voiced = _harmonics(np.full(n, p["f0"]), amps, sr, rng, fmax=MAMMAL_FMAX)
    burst = p["noise"] * _band_noise(n, 500.0, 600.0, sr, rng)
    decay = np.exp(-np.arange(n) / n * 3)
    return (voiced / _rms(voiced) + burst) * decay * _env(n, sr, 0.005, 0.02)


FAMILIES: dict[str, CallFamily] = {
    # --- Aves
    "tonal_whistle": CallFamily(
        "Aves",
        {
            "f0": (1500, 6000),
            "dur": (0.3, 1.2),
            "vib": (0.0, 0.03),
            "rate": (4, 10),
            "gap": (0.5, 3),
        },
        _syn_whistle,
    ),
    "fm_upsweep": CallFamily(
        "Aves",
        {
            "f0": (1000, 4000),
            "span": (1.3, 2.5),
            "dur": (0.1, 0.6),
            "h2": (0, 0.3),
            "gap": (0.3, 2),
        },
        _syn_sweep(+1.0),
    ),
    "fm_downsweep": CallFamily(
        "Aves",
        {
            "f0": (2500, 8000),
            "span": (1.3, 2.5),
            "dur": (0.1, 0.6),
            "h2": (0, 0.3),
            "gap": (0.3, 2),
        },
        _syn_sweep(-1.0),
    ),
    "harmonic_stack": CallFamily(
        "Aves",
        {
            "f0": (400, 1600),
            "n_harm": (3, 7),
            "tilt": (0.5, 1.5),
            "bend": (-0.1, 0.1),
            "dur": (0.2, 0.8),
            "gap": (0.4, 2.5),
        },
        _syn_harmonic_stack,
    ),
    "trill": CallFamily(
        "Aves",
        {
            "f0": (2000, 7000),
            "rate": (8, 25),
            "note": (0.015, 0.04),
            "sweep": (0, 0.3),
            "dur": (0.5, 2.0),
            "gap": (1, 4),
        },
        _syn_trill,
    ),
    "chirp_series": CallFamily(
        "Aves",
        {
            "f0": (3000, 8000),
            "rate": (2, 6),
            "note": (0.03, 0.08),
            "sweep": (0.3, 0.5),
            "dur": (0.6, 2.0),
            "gap": (1, 4),
        },
        _syn_trill,
    ),
    "warble": CallFamily(
        "Aves",
        {
            "f0": (1500, 5000),
            "depth": (0.08, 0.25),
            "rate": (4, 15),
            "dur": (0.5, 1.5),
            "h2": (0, 0.4),
            "gap": (0.5, 3),
        },
        _syn_warble,
    ),
    "two_note": CallFamily(
        "Aves",
        {
            "f0": (1500, 5000),
            "interval": (0.6, 0.85),
            "note": (0.15, 0.4),
            "pause": (0.05, 0.15),
            "gap": (0.8, 4),
        },
        _syn_two_note,
    ),
    "drum_roll": CallFamily(
        "Aves",
        {
            "fc": (800, 3000),
            "bw": (500, 2000),
            "rate": (10, 25),
            "note": (0.002, 0.006),
            "dur": (0.8, 2.0),
            "decay": (0.5, 2.0),
            "gap": (2, 6),
        },
        _syn_drum_roll,
    ),
    "hoot": CallFamily(
        "Aves",
        {"f0": (250, 700), "dur": (0.3, 0.8), "h2": (0.05, 0.3), "gap": (0.5, 2.5)},
        _syn_hoot,
    ),
    "nasal_caw": CallFamily(
        "Aves",
        {
            "f0": (500, 1200),
            "n_harm": (8, 12),
            "rough": (0.3, 0.8),
            "dur": (0.2, 0.5),
            "gap": (0.4, 2),
        },
        _syn_nasal_caw,
    ),
    "descending_trill": CallFamily(
        "Aves",
        {
            "f0": (3000, 7000),
            "rate": (10, 20),
            "note": (0.02, 0.05),
            "drop": (0.3, 0.6),
            "dur": (0.8, 2.0),
            "gap": (1.5, 5),
        },
        _syn_descending_trill,
    ),
    "buzzy_note": CallFamily(
        "Aves",
        {
            "fc": (3000, 8000),
            "bw": (300, 1200),
            "rate": (50, 150),
            "dur": (0.3, 1.0),
            "gap": (0.5, 3),
        },
        _syn_buzzy_note,
    ),
    # --- Amphibia
    "frog_pulse_train": CallFamily(
        "Amphibia",
        {
            "f0": (800, 3000),
            "n_harm": (2, 4),
            "rate": (15, 60),
            "note": (0.005, 0.015),
            "dur": (0.3, 1.5),
            "gap": (0.3, 2),
        },
        _syn_frog_pulse_train,
    ),
    "frog_croak": CallFamily(
        "Amphibia",
        {"f0": (150, 500), "n_harm": (6, 10), "rate": (20, 60), "dur": (0.2, 0.6), "gap": (0.3, 2)},
        _syn_frog_croak,
    ),
    "frog_peep": CallFamily(
        "Amphibia",
        {"f0": (2500, 3800), "span": (1.05, 1.25), "dur": (0.1, 0.2), "gap": (0.5, 1.5)},
        _syn_frog_peep,
    ),
    "frog_tink": CallFamily(
        "Amphibia", {"f0": (2000, 5000), "dur": (0.008, 0.025), "gap": (0.2, 1)}, _syn_frog_tink
    ),
    # --- Insecta
    "insect_buzz": CallFamily(
        "Insecta",
        {
            "fc": (3000, 10000),
            "bw": (100, 500),
            "rate": (20, 100),
            "depth": (0.3, 0.9),
            "dur": (2, 6),
            "gap": (0.2, 1.5),
        },
        _syn_insect_buzz,
    ),
    "cricket_chirp": CallFamily(
        "Insecta",
        {
            "f0": (3000, 7000),
            "rate": (25, 60),
            "note": (0.008, 0.02),
            "pulses": (3, 6),
            "gap": (0.2, 1),
        },
        _syn_cricket_chirp,
    ),
    "cicada_drone": CallFamily(
        "Insecta",
        {
            "fc": (4000, 9000),
            "bw": (1000, 3000),
            "rate": (100, 250),
            "dur": (2, 6),
            "gap": (0.5, 3),
        },
        _syn_cicada_drone,
    ),
    "katydid_rasp": CallFamily(
        "Insecta",
        {
            "fc": (8000, 13000),
            "bw": (1500, 4000),
            "rate": (20, 80),
            "note": (0.003, 0.01),
            "dur": (0.2, 1.0),
            "gap": (0.5, 3),
        },
        _syn_katydid_rasp,
    ),
    # --- Mammalia (energy below ~1 kHz)
    "mammal_grunt": CallFamily(
        "Mammalia",
        {
            "f0": (80, 250),
            "n_harm": (4, 8),
            "noise": (0.2, 0.6),
            "dur": (0.15, 0.5),
            "gap": (0.3, 2),
        },
        _syn_mammal_grunt,
    ),
    "mammal_howl": CallFamily(
        "Mammalia",
        {"f0": (200, 500), "arch": (0.2, 0.5), "n_harm": (2, 5), "dur": (1, 3), "gap": (1, 4)},
        _syn_mammal_howl,
    ),
    "mammal_bark": CallFamily(
        "Mammalia",
        {
            "f0": (250, 550),
            "n_harm": (3, 6),
            "noise": (0.3, 0.7),
            "dur": (0.08, 0.2),
            "gap": (0.3, 2),
        },
        _syn_mammal_bark,
    ),
}

# ------------------------------------------------------------------------------ species / names

_ADJECTIVES = [
    "Rufous",
    "Grey",
    "Spotted",
    "Striped",
    "Yellow",
    "Crested",
    "Little",
    "Great",
    "Olive",
    "Chestnut",
    "Scaly",
    "Barred",
    "White",
    "Black",
    "Dusky",
    "Pale",
    "Lesser",
    "Cinnamon",
    "Buff",
    "Tawny",
    "Slaty",
    "Ochre",
    "Golden",
    "Blue",
    "Green",
    "Red",
    "Brown",
    "Sooty",
    "Plain",
    "Banded",
    "Ruddy",
    "Crimson",
    "Russet",
    "Ashy",
    "Silvery",
    "Orange",
    "Masked",
    "Wedge",
    "Pygmy",
    "Giant",
]
_NOUNS = {
    "Aves": [
        "Antwren",
        "Antbird",
        "Tanager",
        "Flycatcher",
        "Wren",
        "Thrush",
        "Manakin",
        "Tinamou",
        "Woodcreeper",
        "Kiskadee",
        "Saltator",
        "Euphonia",
        "Sparrow",
        "Warbler",
        "Owl",
        "Pigeon",
        "Parakeet",
        "Toucanet",
        "Jacamar",
        "Puffbird",
        "Motmot",
        "Trogon",
        "Vireo",
        "Grosbeak",
        "Seedeater",
        "Hawk",
        "Nightjar",
        "Potoo",
        "Guan",
        "Chachalaca",
    ],
    "Amphibia": ["Treefrog", "Rainfrog", "Toad", "Glassfrog", "Leaffrog", "Robberfrog"],
    "Insecta": ["Katydid", "Cricket", "Cicada", "Grasshopper"],
    "Mammalia": ["Howler", "Tamarin", "Titi", "Agouti", "Peccary", "Deer", "Kinkajou"],
}
_SYLLABLES = [
    "ba",
    "ca",
    "da",
    "la",
    "ma",
    "na",
    "pa",
    "ra",
    "ta",
    "xi",
    "lo",
    "mi",
    "ro",
    "ni",
    "phy",
    "thr",
    "chlo",
    "myr",
    "ant",
    "cer",
    "pip",
    "tur",
]
_EPITHETS = ["us", "a", "is", "um", "ensis", "ata", "ii", "icus", "ella", "ops", "ura", "ax"]
_FIRST = [
    "Ana",
    "Luis",
    "Maria",
    "Juan",
    "Paula",
    "Carlos",
    "Sofia",
    "Diego",
    "Laura",
    "Andres",
    "Elena",
    "Jorge",
    "Camila",
    "Pedro",
]
_LAST = [
    "Gomez",
    "Rojas",
    "Toro",
    "Cruz",
    "Vargas",
    "Rios",
    "Herrera",
    "Mora",
    "Castro",
    "Ortiz",
    "Ulloa",
    "Pardo",
    "Silva",
    "Reyes",
]
_LICENSES = ("cc-by-nc-sa 4.0", "cc-by-nc 4.0", "cc-by 4.0", "cc-by-sa 4.0", "cc0 1.0")
_NON_BIRD_CYCLE = ("Amphibia", "Insecta", "Amphibia", "Mammalia")


@dataclass(frozen=True)
class Species:
    """One synthetic species: taxonomy fields plus its call family and parameters."""

    index: int  # generation index (random-stream key), not the taxonomy position
    primary_label: str
    inat_taxon_id: int
    scientific_name: str
    common_name: str
    class_name: str
    family: str
    params: dict[str, float]
    sibling_of: str = ""  # label of the species this one near-copies ("" if none)


def _class_of(index: int) -> str:
    """Every 4th species is not a bird (cycling Amphibia/Insecta/Amphibia/Mammalia)."""
    if index % 4 != 3:
        return "Aves"
    return _NON_BIRD_CYCLE[(index // 4) % len(_NON_BIRD_CYCLE)]


def _sample_params(family: str, rng: np.random.Generator) -> dict[str, float]:
    spec = FAMILIES[family]
    out = {}
    for key, (lo, hi) in spec.ranges.items():
        if key in spec.log_keys and lo > 0:
            out[key] = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        else:
            out[key] = float(rng.uniform(lo, hi))
    return out


def _sibling_params(params: dict[str, float], rng: np.random.Generator) -> dict[str, float]:
    """A near-copy: same family, pitch shifted 5-12 %, rate/duration within ~15 %."""
    fpitch = float(rng.uniform(1.05, 1.12)) ** rng.choice([-1, 1])
    frate, fdur = np.exp(rng.uniform(-0.15, 0.15, 2))
    out = {}
    for k, v in params.items():
        if k.startswith("f"):
            v = v * fpitch
        elif k == "rate":
            v = v * frate
        elif k in ("dur", "note"):
            v = v * fdur
        out[k] = float(v)
    return out


def _make_species(
    seed: int, stream: int, index: int, pool: list[Species], used: set[str]
) -> Species:
    """Build species `index` from its own random stream; may near-copy one of `pool`."""
    rng = np.random.default_rng([seed, stream, index])
    class_name = _class_of(index)
    # near-copies come in pairs: the parent is neither a copy nor already copied
    taken = {s.sibling_of for s in pool}
    same = [
        s
        for s in pool
        if s.class_name == class_name and not s.sibling_of and s.primary_label not in taken
    ]
    sibling_of = ""
    if same and rng.random() < SIBLING_PROB:
        parent = same[int(rng.integers(len(same)))]
        family, params = parent.family, _sibling_params(parent.params, rng)
        sibling_of = parent.primary_label
    else:
        names = sorted(f for f, spec in FAMILIES.items() if spec.class_name == class_name)
        family = names[int(rng.integers(len(names)))]
        params = _sample_params(family, rng)
    for _ in range(1000):
        adj = _ADJECTIVES[int(rng.integers(len(_ADJECTIVES)))]
        noun = _NOUNS[class_name][int(rng.integers(len(_NOUNS[class_name])))]
        common = f"{adj} {noun}"
        genus = "".join(rng.choice(_SYLLABLES, 2 + int(rng.integers(2)))).capitalize()
        epithet = "".join(rng.choice(_SYLLABLES, 1 + int(rng.integers(2)))) + rng.choice(_EPITHETS)
        taxon_id = int(rng.integers(100_000, 2_000_000))
        if class_name == "Aves":
            base = (adj[:3] + noun[:3]).lower()
            label = base
            k = 1
            while label in used:
                label, k = f"{base}{k}", k + 1
        else:
            label = str(taxon_id)
        if label not in used:
            break
    used.add(label)
    return Species(
        index=index,
        primary_label=label,
        inat_taxon_id=taxon_id,
        scientific_name=f"{genus} {epithet}",
        common_name=common,
        class_name=class_name,
        family=family,
        params=params,
        sibling_of=sibling_of,
    )


def _render_call(sp: Species, rng: np.random.Generator, sr: int) -> np.ndarray:
    """One call of `sp` with within-species jitter, unit RMS."""
    pf, df, rf = np.exp(
        rng.normal(0.0, [CALL_JITTER["pitch"], CALL_JITTER["duration"], CALL_JITTER["rate"]])
    )
    p = {}
    for k, v in sp.params.items():
        if k.startswith("f"):
            v = v * pf
        elif k in ("dur", "note"):
            v = v * df
        elif k == "rate":
            v = v * rf
        p[k] = v
    x = FAMILIES[sp.family].synth(p, rng, sr)
    return x / _rms(x)


def _render_sequence(
    sp: Species, rng: np.random.Generator, sr: int, seconds: float, pauses: bool
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Calls of `sp` one after another filling up to `seconds`; returns (audio, call spans)."""
    n = _n(seconds, sr)
    y = np.zeros(n)
    spans: list[tuple[int, int]] = []
    t = 0
    while t < n:
        call = _render_call(sp, rng, sr)
        call = call * np.exp(rng.normal(0.0, CALL_JITTER["amplitude"]))
        if t + len(call) > n:
            if spans:
                break
            call = call[: n - t] * _env(n - t, sr, 0.001, 0.05)  # first call must be kept
        _add(y, call, t)
        spans.append((t, t + len(call)))
        gap = sp.params["gap"] * np.exp(rng.normal(0.0, 0.4))
        if pauses and rng.random() < 0.15:
            gap += rng.uniform(1.0, 4.0)
        t += len(call) + _n(gap, sr)
    return y, spans


# ----------------------------------------------------------------------------------- audio


def _render_clip(
    sp: Species, secondary: list[Species], seconds: float, sr: int, rng: np.random.Generator
) -> np.ndarray:
    """A clean focal recording: calls of `sp`, maybe a few quieter calls of `secondary`."""
    n = _n(seconds, sr)
    y = np.zeros(n)
    lead = _n(rng.uniform(0.0, min(1.0, 0.2 * seconds)), sr)
    calls, _ = _render_sequence(sp, rng, sr, (n - lead) / sr, pauses=True)
    _add(y, calls, lead)
    for other in secondary:
        for _ in range(int(rng.integers(1, 4))):
            call = _render_call(other, rng, sr) * 10 ** (rng.uniform(-12.0, -3.0) / 20)
            _add(y, call, int(rng.integers(0, max(1, n - len(call)))))
    bg = _coloured_noise(n, rng.uniform(0.5, 1.5), sr, rng)
    if rng.random() < 0.5:
        bg = bg + rng.uniform(0.3, 1.0) * _wind(n, sr, rng)
    y += bg / _rms(bg) * 10 ** (-rng.uniform(*CLIP_SNR_DB) / 20)
    return y / np.max(np.abs(y)) * rng.uniform(0.3, 0.9)


def _wind(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Low-passed noise with slow gusts, unit RMS."""
    fc = rng.uniform(150.0, 600.0)
    x = _shaped_noise(n, sr, rng, lambda f: 1.0 / (1 + (f / fc) ** 4))
    x = x * _smooth_random(n, sr, rng.uniform(1.0, 4.0), 0.6, rng)
    return x / _rms(x)


def _rain(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Impulsive broadband drops (Poisson times, log-normal sizes), unit RMS."""
    drops = np.zeros(n)
    k = rng.poisson(rng.uniform(5.0, 150.0) * n / sr)
    drops[rng.integers(0, n, k)] = np.exp(rng.normal(0.0, 0.8, k))
    m = _n(0.004, sr)
    kernel = rng.standard_normal(m) * np.exp(-np.arange(m) / (m / 4))
    x = fftconvolve(drops, kernel)[:n]
    return x / _rms(x)


def _chorus(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A continuous insect-chorus band with slow swell and fast pulsing, unit RMS."""
    t = np.arange(n) / sr
    pulse = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(20.0, 80.0) * t)
    swell = _smooth_random(n, sr, rng.uniform(2.0, 6.0), 0.4, rng)
    x = _band_noise(n, rng.uniform(2000.0, 8000.0), rng.uniform(150.0, 600.0), sr, rng)
    x = x * pulse * swell
    return x / _rms(x)


def _background(n: int, sr: int, rng: np.random.Generator, preset: NoisePreset) -> np.ndarray:
    bg = _coloured_noise(n, rng.uniform(0.5, 2.0), sr, rng)
    if rng.random() < 0.7:
        bg += rng.uniform(0.5, 2.0) * _wind(n, sr, rng)
    if rng.random() < 0.4:
        bg += rng.uniform(0.3, 1.5) * _rain(n, sr, rng)
    for _ in range(int(rng.integers(preset.chorus_bands[0], preset.chorus_bands[1] + 1))):
        bg += rng.uniform(0.5, 1.5) * _chorus(n, sr, rng)
    return bg


def _render_soundscape(
    seconds: int,
    sr: int,
    rng: np.random.Generator,
    community: list[Species],
    must: list[Species],
    distractors: list[Species],
    preset: NoisePreset,
) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """A noisy soundscape; returns (audio, labelled bouts as (label, start s, end s))."""
    n = seconds * sr
    y = _background(n, sr, rng, preset)
    bg_rms = _rms(y)
    n_win = seconds // WINDOW_SECONDS
    max_k = len(preset.species_per_window) - 1
    queue = [must[i] for i in rng.permutation(len(must))]
    events: list[tuple[str, float, float]] = []

    def bout(sp: Species, w: int) -> tuple[float, float]:
        start = w * WINDOW_SECONDS + rng.uniform(0.0, WINDOW_SECONDS - 1.0)
        audio, spans = _render_sequence(sp, rng, sr, rng.uniform(1.0, 4.0), pauses=False)
        used = np.concatenate([audio[a:b] for a, b in spans])
        snr = rng.uniform(*preset.snr_db)
        s0 = _n(start, sr)
        _add(y, audio * bg_rms * 10 ** (snr / 20) / _rms(used), s0)
        return start + spans[0][0] / sr, min(seconds, start + spans[-1][1] / sr)

    for w in range(n_win):
        k = int(rng.choice(max_k + 1, p=preset.species_per_window))
        k = min(max(k, math.ceil(len(queue) / (n_win - w))), max_k)
        chosen = [queue.pop() for _ in range(min(k, len(queue)))]
        rest = [s for s in community if s not in chosen]
        extra = min(k - len(chosen), len(rest))
        chosen += [rest[i] for i in rng.choice(len(rest), extra, replace=False)]
        for sp in chosen:
            events.append((sp.primary_label, *bout(sp, w)))
        if distractors and rng.random() < preset.distractor_prob:
            bout(distractors[int(rng.integers(len(distractors)))], w)

    y *= 0.05 / _rms(y)  # about -26 dBFS
    peak = np.max(np.abs(y))
    if peak > 0.95:
        y *= 0.95 / peak
    return y, events


def _window_labels(
    events: list[tuple[str, float, float]], seconds: int, min_overlap: float = 0.5
) -> list[set[str]]:
    """Labels per window: a bout counts where it overlaps >= min(min_overlap, half its length)."""
    out: list[set[str]] = [set() for _ in range(seconds // WINDOW_SECONDS)]
    for label, a, b in events:
        need = min(min_overlap, 0.5 * (b - a))
        for w, labels in enumerate(out):
            lo, hi = w * WINDOW_SECONDS, (w + 1) * WINDOW_SECONDS
            if min(b, hi) - max(a, lo) >= need:
                labels.add(label)
    return out


def write_window_labels(
    root: Path,
    row_ids: list[str],
    labels: list[str],
    events: list[list[tuple[str, float, float]]],
    seconds: int,
) -> np.ndarray:
    """Write ``test_soundscapes_labels.csv`` (``row_id`` + a 0/1 column per label) from the
    call events of each test soundscape, in ``row_ids`` order; returns the ``[N, C]`` truth."""
    truth = np.zeros((len(row_ids), len(labels)), dtype=int)
    col = {lab: j for j, lab in enumerate(labels)}
    row = 0
    for soundscape in events:
        for window in _window_labels(soundscape, seconds):
            for lab in window:
                truth[row, col[lab]] = 1
            row += 1
    gt = pd.DataFrame(truth, columns=labels)
    gt.insert(0, "row_id", row_ids)
    atomic_write_text(root / "test_soundscapes_labels.csv", gt.to_csv(index=False))
    return truth


def _write_ogg(path: Path, y: np.ndarray, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y.astype(np.float32), sr, format="OGG", subtype="VORBIS")


# ------------------------------------------------------------------------------------- plan


def _clip_counts(n_classes: int, max_clips: int, rng: np.random.Generator) -> np.ndarray:
    """Long-tailed clip counts per species: ~10 % at max, a tail of 1-2 (random ranks)."""
    top = max(1, round(0.1 * n_classes))
    ranks = np.arange(n_classes)
    x = np.clip((ranks - top + 1) / max(1, n_classes - top), 0.0, 1.0)
    counts = 1 + np.round((max_clips - 1) * (1 - x) ** 1.5).astype(int)
    return counts[rng.permutation(n_classes)]


def _train_rows(species: list[Species], counts: np.ndarray, rng: np.random.Generator) -> list[dict]:
    """Metadata rows of the training clips (audio keys in '_'-prefixed fields)."""
    used_ids: set[str] = set()
    rows = []
    for sp, count in zip(species, counts, strict=True):
        weights = (0.7, 0.2, 0.1) if sp.class_name == "Aves" else (0.1, 0.6, 0.3)
        for clip in range(int(count)):
            coll = str(rng.choice(["XC", "iNat", "CSA"], p=weights))
            while True:
                digits = {"XC": (100_000, 999_999), "iNat": (10_000, 2_000_000)}.get(
                    coll, (10_000, 99_999)
                )
                rec = f"{coll}{int(rng.integers(*digits))}"
                if rec not in used_ids:
                    used_ids.add(rec)
                    break
            secondary: list[Species] = []
            if len(species) > 1 and rng.random() < SECONDARY_CLIP_FRACTION:
                others = [s for s in species if s is not sp]
                k = 1 if rng.random() < 0.8 or len(others) < 2 else 2
                secondary = [others[i] for i in rng.choice(len(others), k, replace=False)]
            if sp.class_name == "Aves":
                kinds = [["call"], ["song"], ["call", "song"], ["alarm call"], ["flight call"]]
                kind = kinds[int(rng.choice(len(kinds), p=(0.4, 0.3, 0.15, 0.1, 0.05)))]
            else:
                kind = [["call"], ["advertisement call"], []][int(rng.integers(3))]
            rating = (
                float(rng.choice(np.arange(2.5, 5.01, 0.5), p=(0.05, 0.1, 0.2, 0.25, 0.2, 0.2)))
                if coll == "XC"
                else 0.0  # as in BirdCLEF: iNat / CSA recordings are unrated
            )
            rows.append(
                {
                    "primary_label": sp.primary_label,
                    "secondary_labels": str([s.primary_label for s in secondary]),
                    "type": str(kind),
                    "filename": f"{sp.primary_label}/{rec}.ogg",
                    "collection": coll,
                    "rating": rating,
                    "url": f"https://example.org/birdsweep-demo/{rec}",
                    "latitude": round(float(rng.uniform(4.0, 9.0)), 4),
                    "longitude": round(float(rng.uniform(-76.5, -72.5)), 4),
                    "scientific_name": sp.scientific_name,
                    "common_name": sp.common_name,
                    "author": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
                    "license": str(rng.choice(_LICENSES)),
                    "_species": sp,
                    "_clip": clip,
                    "_secondary": secondary,
                }
            )
    return rows


def _soundscape_stems(n_train: int, n_test: int, rng: np.random.Generator):
    train: list[str] = []
    while len(train) < n_train:
        day = int(rng.integers(0, 60))
        date = pd.Timestamp("2023-04-01") + pd.Timedelta(days=day)
        minute = int(rng.integers(0, 24 * 6)) * 10
        stem = (
            f"H{int(rng.integers(1, 70)):02d}_{date:%Y%m%d}_{minute // 60:02d}{minute % 60:02d}00"
        )
        if stem not in train:
            train.append(stem)
    test: list[str] = []
    while len(test) < n_test:
        stem = f"soundscape_{int(rng.integers(1_000_000, 9_999_999))}"
        if stem not in test:
            test.append(stem)
    return train, sorted(test)


def _community(
    species: list[Species], must: list[Species], rng: np.random.Generator
) -> list[Species]:
    """Species heard at one site: `must` plus a random handful."""
    n = len(species)
    size = int(rng.integers(max(2, n // 4), max(3, n // 2) + 1))
    pool = [s for s in species if s not in must]
    extra = max(0, min(size - len(must), len(pool)))
    return list(must) + [pool[i] for i in rng.choice(len(pool), extra, replace=False)]


# ------------------------------------------------------------------------------------ public


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
    row_ids = [f"{stem}_{end}" for stem in test_stems for end in range(5, secs + 1, 5)]
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
        _write_ogg(root / "train_audio" / r["filename"], y, sr)

    def soundscape_job(split: int, k: int, stem: str, folder: str):
        rng = np.random.default_rng([seed, _S_SOUNDSCAPE, split, k])
        must = test_must.get(stem, [])
        y, events = _render_soundscape(secs, sr, rng, communities[stem], must, distractors, preset)
        _write_ogg(root / folder / f"{stem}.ogg", y, sr)
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
