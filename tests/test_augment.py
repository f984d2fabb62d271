"""Batch augmentations: shapes, SNR, noise crops, mixup targets, masks, every conf/aug option."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from birdsweep.augment.pipeline import AugmentPipeline
from birdsweep.augment.spec import SpecAugment, SpecWarp
from birdsweep.augment.wave import BackgroundNoise, ColoredNoise, Gain, WaveMixup, mix_at_snr

CONF = Path(__file__).resolve().parents[1] / "conf"
SR = 8000
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def _seed():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _batch(b: int = 4, n: int = 800, c: int = 5, device: str = "cpu"):
    wave = torch.randn(b, n, device=device)
    target = torch.zeros(b, c, device=device)
    target[torch.arange(b), torch.arange(b) % c] = 1.0
    weight = torch.linspace(0.5, 1.0, b, device=device)
    return wave, target, weight


def _db(x: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(x.double().pow(2).mean(-1))


def _bound_noise(p: float = 1.0, snr=(0.0, 10.0), lengths=(300, 2000)) -> BackgroundNoise:
    t = BackgroundNoise(snr_db=snr, p=p)
    rng = np.random.default_rng(0)
    t.bind_noise([rng.standard_normal(n).astype(np.float32) for n in lengths], SR)
    return t


WAVE_TRANSFORMS = {
    "background": lambda p: _bound_noise(p=p),
    "colored": lambda p: ColoredNoise(snr_db=(0, 10), p=p),
    "gain": lambda p: Gain(-6, 6, p=p),
    "mixup_or": lambda p: WaveMixup(alpha=1.0, p=p, mode="or"),
    "mixup_sum": lambda p: WaveMixup(alpha=0.0, p=p, mode="sum"),
}
SPEC_TRANSFORMS = {
    "specaug": lambda p: SpecAugment(5, 4, 2, 2, p=p),
    "specwarp": lambda p: SpecWarp(1.0, (0.8, 1.2), p=p),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(WAVE_TRANSFORMS))
def test_wave_transform_shapes_dtypes_and_p0_identity(name: str, device: str):
    wave, target, weight = _batch(device=device)
    out = WAVE_TRANSFORMS[name](1.0)(wave, target, weight)
    for got, ref in zip(out, (wave, target, weight), strict=True):
        assert got.shape == ref.shape and got.dtype == ref.dtype and got.device == ref.device
    assert not torch.equal(out[0], wave)  # p=1 changed something
    same = WAVE_TRANSFORMS[name](0.0)(wave, target, weight)
    for got, ref in zip(same, (wave, target, weight), strict=True):
        assert torch.equal(got, ref)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(SPEC_TRANSFORMS))
def test_spec_transform_shapes_dtypes_and_p0_identity(name: str, device: str):
    _, target, weight = _batch(device=device)
    spec = torch.randn(4, 1, 16, 20, device=device)
    out = SPEC_TRANSFORMS[name](1.0)(spec, target, weight)
    for got, ref in zip(out, (spec, target, weight), strict=True):
        assert got.shape == ref.shape and got.dtype == ref.dtype
    assert not torch.equal(out[0], spec)
    same = SPEC_TRANSFORMS[name](0.0)(spec, target, weight)
    for got, ref in zip(same, (spec, target, weight), strict=True):
        assert torch.equal(got, ref)


def test_half_precision_wave_keeps_dtype():
    wave, target, weight = _batch()
    wave = wave.to(torch.bfloat16)
    for make in WAVE_TRANSFORMS.values():
        assert make(1.0)(wave, target, weight)[0].dtype == torch.bfloat16


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("snr", [-5.0, 3.0, 20.0])
def test_background_noise_reaches_the_snr(snr: float, device: str):
    wave = torch.sin(torch.linspace(0, 300, 1000, device=device))[None].repeat(3, 1) * 0.3
    t = _bound_noise(p=1.0, snr=(snr, snr))
    noisy, _, _ = t(wave, torch.zeros(3, 2, device=device), torch.ones(3, device=device))
    measured = _db(wave) - _db(noisy - wave)
    assert torch.allclose(measured, torch.full_like(measured, snr, dtype=torch.double), atol=0.5)


def test_colored_noise_reaches_the_snr_and_has_the_slope():
    wave = torch.randn(2, 4096)
    noisy, _, _ = ColoredNoise(snr_db=6.0, p=1.0, exponent=2.0)(
        wave, torch.zeros(2, 1), torch.ones(2)
    )
    noise = noisy - wave
    assert torch.allclose(
        _db(wave) - _db(noise), torch.full((2,), 6.0, dtype=torch.double), atol=0.5
    )
    spec = torch.fft.rfft(noise).abs().pow(2).mean(0)
    low, high = spec[10:50].mean(), spec[1000:2000].mean()
    assert low > 100 * high  # brown noise: power falls as 1/f^2


def test_mix_at_snr_leaves_silence_and_unselected_rows_alone():
    wave = torch.randn(3, 100)
    wave[1] = 0.0
    apply = torch.tensor([True, True, False])
    out = mix_at_snr(wave, torch.randn(3, 100), torch.zeros(3), apply)
    assert not torch.equal(out[0], wave[0])
    assert torch.equal(out[1:], wave[1:])


@pytest.mark.parametrize("gather", [False, True])
@pytest.mark.parametrize("length", [37, 500])
def test_noise_crop_is_contiguous_and_tiles_short_clips(length: int, gather: bool):
    n = 120
    t = BackgroundNoise(p=1.0)
    t.bind_noise([np.arange(length, dtype=np.float32)], SR)
    crops = t.crop(16, n, torch.device("cpu"), gather=gather)
    assert crops.shape == (16, n)
    for row in crops:
        o = int(row[0])
        assert 0 <= o < length
        if length >= n:
            assert o <= length - n  # a long clip is cropped, never wrapped
        assert torch.equal(row, ((o + torch.arange(n)) % length).float())
    assert len({int(r[0]) for r in crops}) > 1  # offsets are random


def test_noise_crop_picks_among_several_clips():
    t = BackgroundNoise(p=1.0)
    t.bind_noise([np.zeros(50, np.float32), np.full(400, 7.0, np.float32)], SR)
    crops = t.crop(64, 80, torch.device("cpu"), gather=True)
    firsts = {float(r[0]) for r in crops}
    assert firsts == {0.0, 7.0}
    assert all(len(set(r.tolist())) == 1 for r in crops)  # a crop never straddles two clips


def test_no_noise_bound_falls_back_to_colored_noise_and_logs_once(caplog):
    t = BackgroundNoise(snr_db=(5, 5), p=1.0)
    wave, target, weight = _batch()
    with caplog.at_level(logging.WARNING, logger="birdsweep.augment.wave"):
        out, _, _ = t(wave, target, weight)
        t(wave, target, weight)
    assert sum("no noise bound" in r.message for r in caplog.records) == 1
    assert torch.allclose(_db(wave) - _db(out - wave), torch.full((4,), 5.0).double(), atol=0.5)
    t.bind_noise([], SR)  # empty list: still the fallback
    assert t.num_clips == 0 and not torch.equal(t(wave, target, weight)[0], wave)


def test_noise_dirs_are_decoded_and_resampled(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "sub" / "a.wav", np.ones((400, 2), np.float32) * 0.1, SR // 2)
    sf.write(tmp_path / "b.flac", np.full(300, 0.2, np.float32), SR)
    (tmp_path / "notes.txt").write_text("not audio")
    t = BackgroundNoise(p=1.0, noise_dirs=[str(tmp_path)])
    t.bind_noise([np.zeros(10, np.float32)], SR)
    assert t.num_clips == 3
    assert sorted(t._lens.tolist()) == [10, 300, 800]  # 400 samples at SR/2 -> 800 at SR
    with pytest.raises(FileNotFoundError, match="noise_dirs"):
        BackgroundNoise(noise_dirs=[str(tmp_path / "missing")]).bind_noise([], SR)


def test_noise_bank_is_capped():
    t = BackgroundNoise(max_bank_seconds=0.1)  # 800 samples at SR
    t.bind_noise([np.ones(500, np.float32)] * 4, SR)
    assert t._bank.numel() == 800


def test_gain_range():
    wave, target, weight = _batch()
    out, _, _ = Gain(3.0, 3.0, p=1.0)(wave, target, weight)
    assert torch.allclose(out, wave * 10 ** (3 / 20))


def test_wave_mixup_or_targets_and_weights():
    wave, target, weight = _batch(b=8, c=8)
    out, t2, w2 = WaveMixup(alpha=1.0, p=1.0, mode="or")(wave, target, weight)
    assert torch.all(t2 >= target)  # a clip keeps its own labels
    assert set(t2.unique().tolist()) <= {0.0, 1.0}
    mixed = t2.sum(1) == 2
    assert mixed.all()  # p=1: every clip is mixed, never with itself
    partner = (t2 - target).argmax(1)  # one-hot labels identify the partner
    assert torch.allclose(w2[mixed], torch.maximum(weight, weight[partner])[mixed])
    # the mixed wave is a convex combination of the clip and its partner
    for i in torch.nonzero(mixed).flatten().tolist():
        j = int(partner[i])
        a, b = wave[i], wave[j]
        lam = torch.dot(out[i] - b, a - b) / torch.dot(a - b, a - b)
        assert 0 <= lam <= 1 and torch.allclose(out[i], lam * a + (1 - lam) * b, atol=1e-5)


def test_wave_mixup_sum_mode_adds_soft_labels():
    target = torch.tensor([[0.5, 0.0], [0.5, 1.0]])
    _, t_or, _ = WaveMixup(p=1.0, mode="or")(torch.randn(2, 50), target, torch.ones(2))
    _, t_sum, _ = WaveMixup(p=1.0, mode="sum")(torch.randn(2, 50), target, torch.ones(2))
    assert torch.equal(t_or, torch.tensor([[0.5, 1.0], [0.5, 1.0]]))
    assert torch.equal(t_sum, torch.tensor([[1.0, 1.0], [1.0, 1.0]]))


def test_specaug_masks_some_but_not_all_in_bands():
    spec = torch.randn(8, 1, 32, 50) + 10.0
    out, _, _ = SpecAugment(10, 8, 2, 2, p=1.0, fill=-100.0)(spec, torch.zeros(8, 2), torch.ones(8))
    masked = out == -100.0
    frac = masked.float().mean()
    assert 0.0 < frac < 0.6
    assert masked.flatten(1).any(1).sum() >= 6  # nearly every clip got a mask (width can be 0)
    m = masked[:, 0]
    full_rows = m.all(dim=2)  # masked mel bins span all frames
    full_cols = m.all(dim=1)  # masked frames span all mel bins
    assert torch.equal(m, full_rows[:, :, None] | full_cols[:, None, :])
    assert int(full_rows.sum(1).max()) <= 16 and int(full_cols.sum(1).max()) <= 20


def test_specaug_mean_fill_uses_each_clips_mean():
    spec = torch.randn(2, 1, 8, 8)
    spec[1] += 50.0
    out, _, _ = SpecAugment(8, 0, 1, 0, p=1.0)(spec, torch.zeros(2, 1), torch.ones(2))
    changed = out != spec
    assert torch.allclose(out[1][changed[1]], spec[1].mean().expand(int(changed[1].sum())))


def _call_image(b: int, row: int, cols: slice) -> torch.Tensor:
    """[b, 1, 32, 60] zeros with one horizontal call (a tone) on mel bin ``row``."""
    spec = torch.zeros(b, 1, 32, 60)
    spec[:, 0, row, cols] = 1.0
    return spec


def test_specwarp_shifts_pitch_by_at_most_the_bins_asked():
    spec = _call_image(64, 15, slice(20, 40))
    torch.manual_seed(0)
    out, _, _ = SpecWarp(max_shift_bins=1.5, time_stretch=1.0, p=1.0)(
        spec, torch.zeros(64, 2), torch.ones(64)
    )
    bins = torch.arange(32, dtype=torch.float32)
    energy = out[:, 0, :, 30]  # one frame inside the call
    centre = (energy * bins).sum(1) / energy.sum(1)  # centroid of the call in mel bins
    assert torch.allclose(energy.sum(1), torch.ones(64), atol=1e-5)  # moved, not lost
    shift = centre - 15
    assert shift.abs().max() <= 1.5 + 1e-4 and shift.abs().max() > 0.75  # fractional bins
    assert (shift > 0).any() and (shift < 0).any()  # up and down
    assert torch.equal(out[:, 0, :, 10], spec[:, 0, :, 10])  # silence stays silent


def test_specwarp_stretches_time_about_the_centre():
    spec = _call_image(2, 10, slice(20, 40))  # a 20-frame call centred in 60 frames
    slow, _, _ = SpecWarp(0.0, (1.5, 1.5), p=1.0)(spec, torch.zeros(2, 1), torch.ones(2))
    fast, _, _ = SpecWarp(0.0, (0.5, 0.5), p=1.0)(spec, torch.zeros(2, 1), torch.ones(2))
    assert int((slow[0, 0, 10] > 0.5).sum()) == 30 and int((fast[0, 0, 10] > 0.5).sum()) == 10
    for out in (slow, fast):
        on = (out[0, 0, 10] > 0.5).nonzero().ravel().float()
        assert abs(float(on.mean()) - 29.5) <= 0.5  # centre kept


def test_specwarp_local_tempo_varies_segment_lengths_and_keeps_order():
    t = 80
    ramp = torch.arange(t, dtype=torch.float32).expand(16, 1, 8, t).clone()  # value = frame
    torch.manual_seed(0)
    warp = SpecWarp(0.0, 1.0, p=1.0, local_tempo=0.4, segments=4)
    out, _, _ = warp(ramp, torch.zeros(16, 1), torch.ones(16))
    frame = out[:, 0, 0]  # [16, t]: the input frame each output frame shows
    assert (frame.diff(dim=1) >= -1e-4).all()  # monotone: nothing reordered
    assert (frame[:, 0] < 1.0).all() and (frame[:, -1] > t - 2.0).all()  # whole crop kept
    tempo = frame[:, 5:15].diff(dim=1).mean(1) / frame[:, 45:55].diff(dim=1).mean(1)
    assert tempo.min() < 0.85 and tempo.max() > 1.15  # the first and third quarter differ
    plain, _, _ = SpecWarp(0.0, 1.0, p=1.0)(ramp, torch.zeros(16, 1), torch.ones(16))
    assert torch.allclose(plain, ramp, atol=1e-3)  # local_tempo=0: one tempo (here none)


def test_specwarp_local_pitch_bends_the_contour_within_its_range():
    spec = _call_image(32, 15, slice(0, 60))  # a tone over the whole crop
    torch.manual_seed(0)
    warp = SpecWarp(0.0, 1.0, p=1.0, local_pitch=1.5, segments=4)
    out, _, _ = warp(spec, torch.zeros(32, 1), torch.ones(32))
    bins = torch.arange(32, dtype=torch.float32)[:, None]
    energy = out[:, 0]  # [32, M, T]
    contour = (energy * bins).sum(1) / energy.sum(1) - 15  # [32, T] offset of each frame
    assert torch.allclose(energy.sum(1), torch.ones(32, 60), atol=1e-5)  # moved, not lost
    assert contour.abs().max() <= 1.5 + 1e-4
    bend = contour.max(1).values - contour.min(1).values  # how far one crop's contour bends
    assert bend.max() > 1.0 and (contour[:, 0] * contour[:, -1] < 0).any()  # up at one end
    steps = contour.diff(dim=1).abs()  # linear between 5 knots: no jumps between frames
    assert steps.max() <= 2 * 1.5 / 15 + 1e-3
    flat, _, _ = SpecWarp(0.0, 1.0, p=1.0)(spec, torch.zeros(32, 1), torch.ones(32))
    assert torch.allclose(flat, spec, atol=1e-5)  # local_pitch=0: one shift (here none)


def test_specwarp_rejects_bad_settings():
    with pytest.raises(ValueError, match="max_shift_bins"):
        SpecWarp(max_shift_bins=-1)
    with pytest.raises(ValueError, match="time_stretch"):
        SpecWarp(time_stretch=(0.0, 1.1))
    with pytest.raises(ValueError, match="p must"):
        SpecWarp(p=2.0)
    with pytest.raises(ValueError, match="local_tempo"):
        SpecWarp(local_tempo=1.0)
    with pytest.raises(ValueError, match="segments"):
        SpecWarp(segments=0)
    with pytest.raises(ValueError, match="local_pitch"):
        SpecWarp(local_pitch=-0.5)


def test_same_seed_same_augmentation():
    pipe = AugmentPipeline(
        wave=[_bound_noise(p=0.5), ColoredNoise(p=0.5), WaveMixup(p=0.5)],
        spec=[SpecAugment(5, 4, p=0.5)],
    )
    wave, target, weight = _batch()
    torch.manual_seed(3)
    a = pipe.wave(wave, target, weight)
    torch.manual_seed(3)
    b = pipe.wave(wave, target, weight)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_pipeline_accepts_mapping_with_disabled_entries_and_binds_noise():
    noise = BackgroundNoise(p=1.0)
    pipe = AugmentPipeline(wave={"noise": noise, "gain": None}, spec=None)
    assert pipe.wave_transforms == [noise] and pipe.needs_noise and pipe.clip_transform is None
    pipe.bind_noise([np.ones(100, np.float32)], SR)
    assert noise.num_clips == 1
    assert not AugmentPipeline(wave=[Gain()]).needs_noise
    assert AugmentPipeline().is_identity
    with pytest.raises(TypeError, match="aug.wave"):
        AugmentPipeline(wave={"oops": {"snr_db": 3}})


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(overrides=overrides)


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "aug").glob("*.yaml")))
def test_every_aug_option_instantiates_and_runs(option: str, tmp_path: Path):
    cfg = _compose([f"+aug={option}", f"+paths.cache_dir={tmp_path}"])
    aug = instantiate(cfg.aug)
    assert isinstance(aug, AugmentPipeline)
    aug.bind_noise([np.random.default_rng(0).standard_normal(3000).astype(np.float32)], SR)
    wave, target, weight = _batch(b=3, n=4000)
    w2, t2, v2 = aug.wave(wave, target, weight)
    s2, t3, v3 = aug.spec(torch.randn(3, 1, 32, 40), t2, v2)
    assert w2.shape == wave.shape and s2.shape == (3, 1, 32, 40)
    assert t3.shape == target.shape and v3.shape == weight.shape
    assert torch.all((t3 >= 0) & (t3 <= 1)) and torch.isfinite(w2).all()
    assert aug.is_identity == (option == "clean")


def test_composed_options_contain_their_parts():
    full = instantiate(_compose(["+aug=full", "+paths.cache_dir=unused"]).aug)
    kinds = [type(t).__name__ for t in full.wave_transforms + full.spec_transforms]
    assert kinds == ["BackgroundNoise", "ColoredNoise", "Gain", "WaveMixup", "SpecAugment"]
    off = instantiate(
        _compose(["+aug=noisy", "aug.wave.colored=null", "+paths.cache_dir=unused"]).aug
    )
    assert [type(t).__name__ for t in off.wave_transforms] == ["BackgroundNoise", "Gain"]


def test_clip_transform_from_config_runs_audiomentations():
    cfg = _compose(
        [
            "+aug=clean",
            "aug.clip={_target_: audiomentations.Compose, transforms: [{_target_: "
            "audiomentations.Gain, min_gain_db: 6, max_gain_db: 6, p: 1.0}]}",
        ]
    )
    aug = instantiate(cfg.aug)
    x = np.full(800, 0.1, np.float32)
    y = aug.clip_transform(x, SR)
    assert y.dtype == np.float32 and np.allclose(y, 0.1 * 10 ** (6 / 20), rtol=1e-4)
