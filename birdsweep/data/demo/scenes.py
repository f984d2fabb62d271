"""Audio scenes of the demo data set: calls, focal clips, backgrounds, soundscapes and the
5 s window labels of the test soundscapes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import fftconvolve

from birdsweep.atomic import atomic_write_text
from birdsweep.data.demo.families import FAMILIES
from birdsweep.data.demo.species import Species
from birdsweep.data.demo.synth import (
    _band_noise,
    _coloured_noise,
    _env,
    _n,
    _shaped_noise,
    _smooth_random,
    add_at,
    rms,
)
from birdsweep.data.windows import WINDOW_SECONDS as _SCORING_WINDOW

WINDOW_SECONDS = int(_SCORING_WINDOW)  # whole seconds: the demo's windows are its row_ids


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
    return x / rms(x)


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
        add_at(y, call, t)
        spans.append((t, t + len(call)))
        gap = sp.params["gap"] * np.exp(rng.normal(0.0, 0.4))
        if pauses and rng.random() < 0.15:
            gap += rng.uniform(1.0, 4.0)
        t += len(call) + _n(gap, sr)
    return y, spans


def _render_clip(
    sp: Species, secondary: list[Species], seconds: float, sr: int, rng: np.random.Generator
) -> np.ndarray:
    """A clean focal recording: calls of `sp`, maybe a few quieter calls of `secondary`."""
    n = _n(seconds, sr)
    y = np.zeros(n)
    lead = _n(rng.uniform(0.0, min(1.0, 0.2 * seconds)), sr)
    calls, _ = _render_sequence(sp, rng, sr, (n - lead) / sr, pauses=True)
    add_at(y, calls, lead)
    for other in secondary:
        for _ in range(int(rng.integers(1, 4))):
            call = _render_call(other, rng, sr) * 10 ** (rng.uniform(-12.0, -3.0) / 20)
            add_at(y, call, int(rng.integers(0, max(1, n - len(call)))))
    bg = _coloured_noise(n, rng.uniform(0.5, 1.5), sr, rng)
    if rng.random() < 0.5:
        bg = bg + rng.uniform(0.3, 1.0) * _wind(n, sr, rng)
    y += bg / rms(bg) * 10 ** (-rng.uniform(*CLIP_SNR_DB) / 20)
    return y / np.max(np.abs(y)) * rng.uniform(0.3, 0.9)


def _wind(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Low-passed noise with slow gusts, unit RMS."""
    fc = rng.uniform(150.0, 600.0)
    x = _shaped_noise(n, sr, rng, lambda f: 1.0 / (1 + (f / fc) ** 4))
    x = x * _smooth_random(n, sr, rng.uniform(1.0, 4.0), 0.6, rng)
    return x / rms(x)


def _rain(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Impulsive broadband drops (Poisson times, log-normal sizes), unit RMS."""
    drops = np.zeros(n)
    k = rng.poisson(rng.uniform(5.0, 150.0) * n / sr)
    drops[rng.integers(0, n, k)] = np.exp(rng.normal(0.0, 0.8, k))
    m = _n(0.004, sr)
    kernel = rng.standard_normal(m) * np.exp(-np.arange(m) / (m / 4))
    x = fftconvolve(drops, kernel)[:n]
    return x / rms(x)


def _chorus(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A continuous insect-chorus band with slow swell and fast pulsing, unit RMS."""
    t = np.arange(n) / sr
    pulse = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(20.0, 80.0) * t)
    swell = _smooth_random(n, sr, rng.uniform(2.0, 6.0), 0.4, rng)
    x = _band_noise(n, rng.uniform(2000.0, 8000.0), rng.uniform(150.0, 600.0), sr, rng)
    x = x * pulse * swell
    return x / rms(x)


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
    bg_rms = rms(y)
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
        add_at(y, audio * bg_rms * 10 ** (snr / 20) / rms(used), s0)
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

    y *= 0.05 / rms(y)  # about -26 dBFS
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
