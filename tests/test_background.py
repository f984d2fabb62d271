"""CallSuppressor: calls in a noise recording go, its stationary background stays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from birdsweep.augment.background import CallSuppressor, band_floor
from birdsweep.augment.wave import BackgroundNoise

SR = 16000
CONF = Path(__file__).resolve().parents[1] / "conf"


def _db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def _band(n: int, fc: float, rng: np.random.Generator) -> np.ndarray:
    """Pulsing insect-like noise band around ``fc`` (30 Hz pulses), unit-ish RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    band = np.fft.irfft(spec * np.exp(-0.5 * ((f - fc) / 150) ** 2), n)
    t = np.arange(n) / SR
    return band / band.std() * (0.5 + 0.5 * np.sin(2 * np.pi * 30 * t))


def _scene(seconds: float = 20.0, seed: int = 0):
    """Hiss + a chorus band at 5 kHz (the background) and three 0.8 s whistles (the calls)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    background = 0.02 * rng.standard_normal(n) + 0.05 * _band(n, 5000.0, rng)
    calls = np.zeros(n)
    t = np.arange(int(0.8 * SR)) / SR
    for start, f0 in ((3.0, 2500.0), (9.5, 3200.0), (15.0, 1800.0)):
        if start + 0.8 > seconds:
            continue
        sweep = 0.3 * np.sin(2 * np.pi * (f0 * t + 400 * t**2))  # a rising whistle
        calls[int(start * SR) : int(start * SR) + t.size] += sweep
    return background.astype(np.float32), calls.astype(np.float32)


def test_calls_are_turned_down_and_the_background_kept():
    background, calls = _scene()
    out = CallSuppressor(max_above_db=6.0, block_seconds=6.0, n_fft=512)(background + calls, SR)
    assert out.shape == background.shape and out.dtype == np.float32
    residual = out - background  # what is left of the calls (plus what changed of the rest)
    assert _db(calls) - _db(residual) > 15.0  # the calls lose more than 15 dB
    quiet = np.ones(background.size, bool)  # away from the calls the recording is kept
    for start in (3.0, 9.5, 15.0):
        quiet[int((start - 0.2) * SR) : int((start + 1.0) * SR)] = False
    assert abs(_db(out[quiet]) - _db(background[quiet])) < 1.0


def test_a_louder_limit_keeps_more_of_the_calls():
    background, calls = _scene(seed=1)
    span = slice(int(3.0 * SR), int(3.8 * SR))  # the first whistle
    excess = [  # level of the whistle's span over that of the background alone, dB
        _db(CallSuppressor(max_above_db=db, n_fft=512)(background + calls, SR)[span])
        - _db(background[span])
        for db in (3.0, 12.0, 24.0)
    ]
    assert excess[0] < excess[1] < excess[2]
    assert excess[2] < _db((background + calls)[span]) - _db(background[span])


def test_stationary_noise_passes_nearly_unchanged():
    background, _ = _scene(seed=2)
    out = CallSuppressor(n_fft=512)(background, SR)
    assert abs(_db(out) - _db(background)) < 1.0
    assert np.corrcoef(out, background)[0, 1] > 0.95


def test_short_recordings_and_bad_settings():
    short = np.ones(100, np.float32)
    assert np.array_equal(CallSuppressor(n_fft=512)(short, SR), short)
    for kwargs, key in (
        ({"max_above_db": 0}, "max_above_db"),
        ({"block_seconds": -1}, "block_seconds"),
        ({"n_fft": 30}, "n_fft"),
    ):
        with pytest.raises(ValueError, match=key):
            CallSuppressor(**kwargs)


def test_band_floor_is_the_blockwise_median_interpolated():
    mag = np.tile(np.array([1.0, 1.0, 9.0, 1.0, 3.0, 3.0, 3.0, 30.0]), (2, 1))
    floor = band_floor(mag, 4)  # medians 1 (frames 0-3) and 3 (frames 4-7)
    assert floor.shape == mag.shape
    assert floor[0, 0] == pytest.approx(1.0) and floor[0, -1] == pytest.approx(3.0)
    assert np.all(np.diff(floor[0]) >= 0)  # linear between the block centres
    assert np.allclose(band_floor(mag[:, :3], 4), 1.0)  # one block: its median everywhere


def test_background_noise_binds_the_suppressed_recordings():
    background, calls = _scene(seconds=8.0, seed=3)
    suppressor = CallSuppressor(n_fft=512)
    noise = BackgroundNoise(p=1.0, suppress_calls=suppressor)
    noise.bind_noise([background + calls], SR)
    assert np.allclose(noise._bank.numpy(), suppressor(background + calls, SR))
    raw = BackgroundNoise(p=1.0)
    raw.bind_noise([background + calls], SR)
    assert _db(noise._bank.numpy()) < _db(raw._bank.numpy()) - 3.0


def test_suppressed_recordings_are_cached_by_content_and_settings(tmp_path):
    background, calls = _scene(seconds=6.0, seed=4)
    audio = background + calls
    cached = CallSuppressor(n_fft=512, cache_dir=tmp_path)
    first = cached(audio, SR)
    assert np.array_equal(first, CallSuppressor(n_fft=512)(audio, SR))
    (entry,) = tmp_path.glob("*.npy")
    np.save(entry, np.zeros_like(first))  # a later call reads the entry, not the audio again
    assert not np.any(cached(audio, SR))
    assert np.array_equal(
        CallSuppressor(n_fft=512, max_above_db=9, cache_dir=tmp_path)(audio, SR),
        CallSuppressor(n_fft=512, max_above_db=9)(audio, SR),
    )
    assert len(list(tmp_path.glob("*.npy"))) == 2  # other settings: another entry
    entry.write_bytes(b"broken")
    assert np.array_equal(cached(audio, SR), first)  # a damaged entry is recomputed


def test_the_default_recipe_suppresses_calls_in_its_noise(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("train", overrides=[f"paths.root_dir={tmp_path}"])
    noise = instantiate(cfg.aug).wave_transforms[0]
    assert isinstance(noise, BackgroundNoise)
    assert isinstance(noise.suppress_calls, CallSuppressor)
    assert noise.suppress_calls.cache_dir == tmp_path / ".cache" / "suppressed_noise"
