import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from birdsweep.data.audio import AudioError, load_audio
from birdsweep.data.cache import AudioCache, build_audio_cache
from birdsweep.data.dataset import TrainCrops, clip_windows, fit_length
from birdsweep.data.folds import ALWAYS_TRAIN, assign_folds
from birdsweep.data.metadata import DataError, load_metadata, parse_label_list

SR = 32000


def _tone(seconds: float, freq: float = 1000.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write_layout(root: Path, rows: list[tuple[str, str, str]], labels: list[str]) -> None:
    (root / "train_audio").mkdir(parents=True)
    pd.DataFrame({"primary_label": labels, "class_name": "Aves"}).to_csv(
        root / "taxonomy.csv", index=False
    )
    recs = []
    for lab, sec, name in rows:
        (root / "train_audio" / lab).mkdir(exist_ok=True)
        sf.write(root / "train_audio" / lab / name, _tone(2.0), SR, format="OGG", subtype="VORBIS")
        recs.append(
            {
                "primary_label": lab,
                "secondary_labels": sec,
                "filename": f"{lab}/{name}",
                "rating": 4.0,
            }
        )
    pd.DataFrame(recs).to_csv(root / "train.csv", index=False)


@pytest.mark.parametrize(
    "cell,expected",
    [
        ("['a1', 'b2']", ["a1", "b2"]),
        ("[]", []),
        ("['']", []),
        (float("nan"), []),
        ("", []),
        ("['x']", ["x"]),
    ],
)
def test_parse_secondary_labels(cell, expected):
    assert parse_label_list(cell) == expected


def test_parse_secondary_labels_bad_literal_names_row():
    with pytest.raises(DataError, match="row 7"):
        parse_label_list("[abc", where="train.csv row 7")


def test_metadata_label_order_and_secondary(tmp_path):
    _write_layout(
        tmp_path, [("zz", "['aa', 'unknown']", "1.ogg"), ("aa", "[]", "2.ogg")], ["zz", "aa", "mm"]
    )
    meta = load_metadata(tmp_path)
    assert meta.labels == ["zz", "aa", "mm"]  # taxonomy order, not sorted
    assert meta.train["label_idx"].tolist() == [0, 1]
    assert meta.train["secondary_idx"].tolist() == [[1], []]  # unknown secondary dropped
    assert Path(meta.train["path"][0]).is_file()


def test_metadata_errors_name_file_and_problem(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        load_metadata(tmp_path / "nope")
    _write_layout(tmp_path, [("zz", "[]", "1.ogg")], ["aa"])
    with pytest.raises(DataError, match=r"train.csv.*zz.*not in taxonomy"):
        load_metadata(tmp_path)
    pd.DataFrame({"primary_label": ["zz"], "filename": ["zz/1.ogg"]}).to_csv(
        tmp_path / "train.csv", index=False
    )
    with pytest.raises(DataError, match=r"train.csv: missing column\(s\) \['secondary_labels'\]"):
        load_metadata(tmp_path)


def test_folds_are_stratified_seeded_and_rare_classes_always_train():
    primary = np.array([0] * 10 + [1] * 5 + [2] * 2)
    f = assign_folds(primary, 5, seed=1)
    assert (f[primary == 2] == ALWAYS_TRAIN).all()
    for k in range(5):
        assert (f[primary == 0] == k).sum() == 2 and (f[primary == 1] == k).sum() == 1
    assert (assign_folds(primary, 5, seed=1) == f).all()
    assert not (assign_folds(primary, 5, seed=2) == f).all()
    with pytest.raises(ValueError, match="n_folds"):
        assign_folds(np.array([0, 1, 2]), 5)


def test_load_audio_resamples_and_downmixes(tmp_path):
    stereo = np.stack([_tone(1.0, sr=44100), -_tone(1.0, sr=44100) * 0.5], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 44100)
    wave = load_audio(tmp_path / "s.wav", SR)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - SR) <= 1
    assert np.abs(wave).max() == pytest.approx(0.125, rel=0.05)  # (0.5 - 0.25) / 2


def test_load_audio_errors(tmp_path):
    (tmp_path / "empty.ogg").write_bytes(b"")
    (tmp_path / "junk.ogg").write_bytes(b"not audio at all" * 10)
    for name in ("empty.ogg", "junk.ogg", "missing.ogg"):
        with pytest.raises(AudioError, match=name):
            load_audio(tmp_path / name, SR)


def test_cache_round_trip_reuse_and_bad_files(tmp_path):
    a, b, bad = tmp_path / "a.ogg", tmp_path / "b.wav", tmp_path / "bad.ogg"
    sf.write(a, _tone(1.5), SR, format="OGG", subtype="VORBIS")
    sf.write(b, _tone(0.5, 500.0, 16000), 16000)
    bad.write_bytes(b"\x00" * 100)
    cache = build_audio_cache([str(a), str(b), str(bad)], tmp_path / "c", SR, progress=False)
    assert cache.length(str(a)) == int(1.5 * SR)
    assert cache.length(str(b)) == SR // 2  # resampled 16 -> 32 kHz
    assert str(bad) not in cache and "bad.ogg" in cache.error(str(bad))
    ref = load_audio(a, SR)
    np.testing.assert_allclose(cache[str(a)], ref, atol=1e-3)  # float16 storage
    # unchanged files are reused; a changed file is decoded again
    again = build_audio_cache([str(a), str(b), str(bad)], tmp_path / "c", SR, progress=False)
    assert again.index.equals(cache.index)
    sf.write(b, _tone(1.0, 500.0, 16000), 16000)
    changed = AudioCache(
        build_audio_cache([str(a), str(b)], tmp_path / "c", SR, progress=False).folder
    )
    assert changed.length(str(b)) == SR and changed.length(str(a)) == int(1.5 * SR)
    np.testing.assert_allclose(changed[str(a)], ref, atol=1e-3)


def _build_in_process(paths: list[str], folder: str) -> list[int]:
    cache = build_audio_cache(paths, folder, SR, num_workers=1, progress=False)
    return [cache.length(p) for p in paths]


def test_cache_built_by_two_processes_at_once(tmp_path):
    # fold workers of a fresh run build the same (noise) cache side by side: the second waits
    # for the first and reuses its files instead of both writing one temporary folder
    paths = []
    for i in range(8):
        paths.append(str(tmp_path / f"n{i}.ogg"))
        sf.write(paths[-1], _tone(4.0, 300.0 + 50 * i), SR, format="OGG", subtype="VORBIS")
    folder = str(tmp_path / "noise")
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(4, mp_context=spawn) as pool:
        lengths = list(pool.map(_build_in_process, [paths] * 4, [folder] * 4))
    assert lengths == [[4 * SR] * 8] * 4
    cache = AudioCache(folder)
    np.testing.assert_allclose(cache[paths[3]], load_audio(paths[3], SR), atol=1e-3)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("noise")) == [
        "noise",
        "noise.lock",
    ]  # no temporary folder left behind


def test_train_crops_and_windows(tmp_path):
    a = tmp_path / "a.wav"
    sf.write(a, _tone(3.0), SR)
    cache = build_audio_cache([str(a)], tmp_path / "c", SR, progress=False)
    ds = TrainCrops(
        cache, [str(a)], [1], [[2]], [0.0], 3, SR, secondary_target=0.5, rating_weighted=True
    )
    wave, y, w = ds[0]
    assert wave.shape == (SR,) and y.tolist() == [0.0, 1.0, 0.5] and float(w) == 1.0
    ds.set_epoch(1)
    assert not np.allclose(ds[0][0].numpy(), wave.numpy())  # new crop each epoch
    assert fit_length(np.ones(3, np.float32), 7, "wrap").tolist() == [1] * 7
    assert fit_length(np.ones(3, np.float32), 5, "constant").tolist() == [1, 1, 1, 0, 0]
    # 3 s clip, 2 s windows: one full window + a 1 s remainder (= half) -> 2 windows
    assert clip_windows(cache, [str(a)], 2 * SR, 5) == [(0, 0), (0, 2 * SR)]
    assert clip_windows(cache, [str(a)], 2 * SR, 1) == [(0, 0)]


def test_clip_repeats_grow_small_epochs_only():
    from omegaconf import OmegaConf

    from birdsweep.train.kfold import clip_repeats

    cfg = OmegaConf.create({"clip_repeats": 1, "min_epoch_samples": 512})
    assert clip_repeats(cfg, 125) == 5  # ceil(512 / 125)
    assert clip_repeats(cfg, 10_000) == 1
    cfg.clip_repeats = 8
    assert clip_repeats(cfg, 125) == 8
    cfg.min_epoch_samples = 0
    cfg.clip_repeats = 1
    assert clip_repeats(cfg, 3) == 1
