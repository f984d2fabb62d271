"""benchmarks/real_recordings.py `build` on a tiny fake source cache (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from benchmarks.real_recordings import SetSpec, Source, build
from birdsweep.data.audio import list_audio_files, load_audio
from birdsweep.data.metadata import load_metadata
from birdsweep.data.prepare import load_soundscape_labels

SR = 32000
FREQ = {"alpha": 1000.0, "beta": 3000.0, "gamma": 5000.0, "dist": 7000.0}


def _tone(freq: float, seconds: float, sr: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = np.sin(2 * np.pi * freq * (1 + 0.01 * rng.standard_normal()) * t)
    pad = np.zeros(int(0.2 * sr))  # leading/trailing silence, trimmed by build
    return np.concatenate([pad, 0.5 * y * np.hanning(len(t)) ** 0.2, pad])


def _lowpass_noise(seconds: float, sr: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(seconds * sr))
    spec = np.fft.rfft(x)
    spec[np.fft.rfftfreq(len(x), 1 / sr) > 600] = 0  # below every class tone
    return 0.1 * np.fft.irfft(spec, len(x))


def _fake_cache(root: Path) -> list[Source]:
    """Files laid out like fetch's cache (deb/<package>/<path>) and their source table."""
    table = []

    def add(pkg: str, rel: str, y: np.ndarray, sr: int, role: str, label: str, group: str):
        path = root / "deb" / pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), y, sr)
        table.append(Source("deb", pkg, "1.0-1", rel, role, label, group, "CC0-1.0"))

    k = 0
    for label, groups in {
        "alpha": ("a1", "a2"),
        "beta": ("b1", "b2", "b3"),
        "gamma": ("g1",),
    }.items():
        for g in groups:
            for i in range(2):
                k += 1
                add(f"pkg-{g}", f"snd/{label}_{i}.wav", _tone(FREQ[label], 0.6, 22050, k), 22050,
                    "call", label, g)  # fmt: skip
    add("pkg-d", "snd/dist.wav", _tone(FREQ["dist"], 0.5, SR, 99), SR, "distractor", "dist", "d")
    for i in range(4):
        add("pkg-amb", f"amb/day_{i}.ogg", _lowpass_noise(12, SR, 200 + i), SR, "ambient", "day",
            f"amb{i}")  # fmt: skip
    return table


SPEC = SetSpec(
    "tiny",
    "fake tones over low-pass noise",
    None,
    ("dist",),
    ("day",),
    snr_db=(15.0, 25.0),
    distractor_rate=0.2,
    calls_per_class=6,
)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real")
    sources = _fake_cache(tmp / "cache")
    kw = dict(cache=tmp / "cache", sources=sources, specs={"tiny": SPEC}, progress=False)
    kw |= dict(n_test=3, n_train_soundscapes=2, soundscape_seconds=20)
    s0 = build(["tiny"], 0, tmp / "a", **kw)[0]
    again = build(["tiny"], 0, tmp / "b", **kw)[0]
    other = build(["tiny"], 1, tmp / "c", **kw)[0]
    return tmp, s0, again, other


def test_layout_loads(built):
    tmp, s0, _, _ = built
    root = tmp / "a" / "tiny_seed0"
    meta = load_metadata(root)
    assert meta.labels == ["alpha", "beta"]  # gamma has one group only: dropped
    assert s0["dropped"] == ["gamma"]
    assert meta.train["path"].map(lambda p: Path(p).is_file()).all()
    assert sf.info(meta.train["path"].iloc[0]).samplerate == SR
    assert len(list_audio_files(root / "train_soundscapes")) == 2
    ids, paths, ends, y = load_soundscape_labels(
        root / "test_soundscapes_labels.csv", root / "test_soundscapes", meta.labels
    )
    assert len(ids) == 3 * 4 and set(ends) == {5, 10, 15, 20}
    sub = pd.read_csv(root / "sample_submission.csv")
    gt = pd.read_csv(root / "test_soundscapes_labels.csv")
    assert list(sub.columns) == list(gt.columns) == ["row_id", *meta.labels]
    assert (sub["row_id"] == gt["row_id"]).all()
    assert y.sum() > 0 and s0["windows_with_positives"] == int((y.sum(1) > 0).sum())


def test_labels_match_mixed_calls(built):
    tmp, _, _, _ = built
    root = tmp / "a" / "tiny_seed0"
    gt = pd.read_csv(root / "test_soundscapes_labels.csv").set_index("row_id")
    ev = pd.read_csv(root / "test_events.csv")
    expect = pd.DataFrame(0, index=gt.index, columns=gt.columns)
    for e in ev[ev["label"].isin(gt.columns)].itertuples():
        need = min(0.5, 0.5 * (e.end_s - e.start_s))
        for end in range(5, 21, 5):
            if min(e.end_s, end) - max(e.start_s, end - 5) >= need:
                expect.loc[f"{e.soundscape}_{end}", e.label] = 1
    assert (gt == expect).all().all()
    assert ev["label"].isin(["alpha", "beta"]).sum() == 2 * SPEC.calls_per_class
    # the audio carries the tone where the labels say: class band energy per window
    for stem in sorted({r.rsplit("_", 1)[0] for r in gt.index}):
        y = load_audio(root / "test_soundscapes" / f"{stem}.ogg", SR)
        for end in range(5, 21, 5):
            seg = y[(end - 5) * SR : end * SR]
            spec = np.abs(np.fft.rfft(seg)) ** 2
            f = np.fft.rfftfreq(len(seg), 1 / SR)
            for lab in gt.columns:
                band = spec[np.abs(f - FREQ[lab]) < 100].sum() / spec.sum()
                if gt.loc[f"{stem}_{end}", lab]:
                    assert band > 1e-3, (stem, end, lab, band)
                else:
                    assert band < 1e-3, (stem, end, lab, band)


def test_train_and_test_sources_never_overlap(built):
    tmp, s0, _, other = built
    for summary, sub in ((s0, "a/tiny_seed0"), (other, "c/tiny_seed1")):
        src = pd.read_csv(tmp / sub / "sources.csv")
        for lab in ("alpha", "beta"):
            tr = set(src[(src.role == "train") & (src.label == lab)]["group"])
            te = set(src[(src.role == "test") & (src.label == lab)]["group"])
            assert tr and te and not tr & te
            assert te == {summary["test_group"][lab]}
        amb_tr = set(src[src.role == "ambient_train"]["path"])
        amb_te = set(src[src.role == "ambient_test"]["path"])
        assert amb_tr and amb_te and not amb_tr & amb_te
        ev = pd.read_csv(tmp / sub / "test_events.csv")
        train_groups = set(src[src.role == "train"]["group"])
        assert not set(ev["group"]) & train_groups


def test_same_seed_same_files(built):
    tmp, s0, again, other = built
    a, b, c = tmp / "a" / "tiny_seed0", tmp / "b" / "tiny_seed0", tmp / "c" / "tiny_seed1"
    for name in ("taxonomy.csv", "train.csv", "test_soundscapes_labels.csv", "test_events.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    files = sorted(p.relative_to(a) for p in a.rglob("*.ogg"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.ogg"))
    for rel in files:  # Ogg stream serials differ per write, the samples do not
        np.testing.assert_array_equal(sf.read(a / rel)[0], sf.read(b / rel)[0])
    assert s0 == {**again, "out": s0["out"]}
    assert (a / "test_events.csv").read_bytes() != (c / "test_events.csv").read_bytes()
