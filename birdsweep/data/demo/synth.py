"""Signal primitives and the call synthesisers of the demo data set.

Every synthesiser takes a parameter dict ``p`` (see :mod:`.families` for the ranges), a
``numpy`` random generator and the sample rate, and returns one call as a float array.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import fft as sfft

MAMMAL_FMAX = 1200.0  # mammal harmonics stop here (low grunts / howls / barks)

# --------------------------------------------------------------------------- signal helpers


def _n(seconds: float, sr: int) -> int:
    return max(1, int(round(seconds * sr)))


def rms(x: np.ndarray) -> float:
    """Root mean square (never 0)."""
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
    return x / rms(x)


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


def add_at(y: np.ndarray, x: np.ndarray, start: int) -> None:
    """Add x into y at sample `start`, clipped to y's bounds."""
    if start >= len(y) or start + len(x) <= 0:
        return
    a, b = max(start, 0), min(start + len(x), len(y))
    y[a:b] += x[a - start : b - start]


# ------------------------------------------------------------------------------ synthesisers

Synth = Callable[[dict, np.random.Generator, int], np.ndarray]


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
    return (voiced / rms(voiced) + breath) * _env(n, sr, 0.02, 0.06)


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
    return (voiced / rms(voiced) + burst) * decay * _env(n, sr, 0.005, 0.02)
