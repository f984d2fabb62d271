"""Truncated (partly decodable) audio: detected, refused in training, filled in at inference."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf, open_dict

from birdsweep.cli import main
from birdsweep.config import build
from birdsweep.data import audio as audio_mod
from birdsweep.data import cache as cache_mod
from birdsweep.data.audio import (
    AudioError,
    TruncatedAudioError,
    check_complete,
    declared_seconds,
    load_audio,
)
from birdsweep.data.cache import build_audio_cache
from birdsweep.data.prepare import ensure_dataset
from birdsweep.export.ensemble import export_ensemble
from birdsweep.export.select import select_checkpoints
from birdsweep.scoring.stream import WindowReader
from birdsweep.train.checkpoint import save_checkpoint
from birdsweep.train.kfold import run_kfold

SR = 32000
LABELS = ["aaa", "bbb", "ccc"]
FORMATS = {  # extension: (format, subtype)
    "ogg": ("OGG", "VORBIS"),
    "flac": ("FLAC", "PCM_16"),
    "wav": ("WAV", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


def _tone(seconds: float, seed: int = 0) -> np.ndarray:
    """A warbling tone with a little noise (compresses like a recording, never silent)."""
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * (1500 + 400 * np.sin(2 * np.pi * 2 * t)) * t)
    x += 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    return x.astype(np.float32)


def _write(path: Path, seconds: float, ext: str | None = None) -> Path:
    ext = ext or path.suffix[1:]
    if FORMATS[ext][0] not in sf.available_formats():
        pytest.skip(f"this libsndfile cannot write {ext}")
    fmt, subtype = FORMATS[ext]
    sf.write(path, _tone(seconds), SR, format=fmt, subtype=subtype)
    return path


def _cut(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    """Copy the first ``fraction`` of the bytes of ``src`` to ``dst`` (a file cut short)."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


# ------------------------------------------------------------------------ detection itself


@pytest.mark.parametrize("ext", list(FORMATS))
def test_intact_files_are_not_flagged(tmp_path, ext):
    path = _write(tmp_path / f"whole.{ext}", 3.5)
    wave = load_audio(path, SR)
    assert len(wave) == pytest.approx(3.5 * SR, abs=0.01 * SR)
    check_complete(path, len(wave) / SR)  # raises when flagged
    assert sum(len(c.windows) for c in WindowReader(SR).iter_windows(path)) == 1


@pytest.mark.parametrize("ext", ["ogg", "wav", "mp3"])
def test_a_file_cut_to_half_its_bytes_is_flagged_by_load_and_stream(tmp_path, ext):
    cut = _cut(_write(tmp_path / f"whole.{ext}", 3.5), tmp_path / f"cut.{ext}")
    with pytest.raises(TruncatedAudioError) as err:
        load_audio(cut, SR)
    msg = str(err.value)
    assert str(cut) in msg and "(truncated?)" in msg
    got = float(re.search(r"decodes to ([\d.]+) s", msg).group(1))
    assert 0.5 < got < 2.5 and got == pytest.approx(err.value.decoded_seconds, abs=0.01)
    if ext == "ogg":  # Ogg declares no length: libsndfile's count is what is left of the file
        assert sf.info(str(cut)).frames / SR == pytest.approx(got, abs=0.01)
        assert "ends inside an Ogg page" in msg and err.value.declared_seconds is None
    else:
        assert "of the 3.50 s its header declares" in msg
        assert err.value.declared_seconds == pytest.approx(3.5, abs=0.01)
    # the streaming reader yields what decodes, then raises the same error
    chunks = []
    with pytest.raises(TruncatedAudioError, match=re.escape(msg)):
        for c in WindowReader(SR).iter_windows(cut):
            chunks.append(c)
    assert sum(len(c.windows) for c in chunks) == 1
    # asking only for a part the file still holds is fine
    assert len(load_audio(cut, SR, max_seconds=0.3)) == int(0.3 * SR)


def test_ogg_cut_on_a_page_boundary_lacks_its_end_of_stream_page(tmp_path):
    data = _write(tmp_path / "whole.ogg", 3.5).read_bytes()
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(data[: data.rfind(b"OggS")])  # every page whole, the last one gone
    with pytest.raises(TruncatedAudioError, match="no end-of-stream page"):
        load_audio(cut, SR)


def test_header_length_comparison_and_its_tolerance(tmp_path):
    path = _write(tmp_path / "whole.flac", 3.5)
    assert declared_seconds(path) == pytest.approx(3.5)
    check_complete(path, 3.5 - 0.04)  # within a decoder block of the header: not flagged
    with pytest.raises(TruncatedAudioError, match=r"decodes to 3\.00 s of the 3\.50 s"):
        check_complete(path, 3.0)
    # a FLAC cut short does not decode at all with libsndfile: the old "cannot decode" error
    with pytest.raises(AudioError):
        load_audio(_cut(path, tmp_path / "cut.flac"), SR)


def test_mp3_without_a_frame_count_is_never_flagged(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile cannot write mp3")
    data = _write(tmp_path / "whole.mp3", 3.5).read_bytes()
    head = data[:400]
    assert b"Xing" in head or b"Info" in head
    head = head.replace(b"Xing", b"\0\0\0\0").replace(b"Info", b"\0\0\0\0")
    plain = tmp_path / "plain.mp3"
    plain.write_bytes(head + data[400:])
    assert declared_seconds(plain) is None  # the length would be an estimate from its size
    cut = _cut(plain, tmp_path / "plain_cut.mp3")
    check_complete(cut, 0.1)  # no reliable count: nothing to compare with


# ------------------------------------------------------------------------- training cache


def test_cache_refuses_truncated_files_and_rechecks_an_older_cache(tmp_path, monkeypatch):
    whole = _write(tmp_path / "whole.ogg", 3.5)
    cut = _cut(_write(tmp_path / "src.ogg", 3.5), tmp_path / "cut.ogg")
    paths = [str(whole), str(cut)]
    # an older cache (no version) built without the check: the cut file is cached short
    with monkeypatch.context() as m:
        m.setattr(audio_mod, "check_complete", lambda *a, **k: None)
        old = build_audio_cache(paths, tmp_path / "c", SR, progress=False)
        assert 0 < old.length(str(cut)) < 2.5 * SR and len(old.failed) == 0
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    meta.pop("version")
    (tmp_path / "c" / "meta.json").write_text(json.dumps(meta))
    decoded: list[str] = []
    checked: list[str] = []

    def counting(calls, real):
        def f(path, *a, **k):
            calls.append(str(path))
            return real(path, *a, **k)

        return f

    monkeypatch.setattr(cache_mod, "load_audio", counting(decoded, cache_mod.load_audio))
    monkeypatch.setattr(cache_mod, "check_complete", counting(checked, cache_mod.check_complete))
    new = build_audio_cache(paths, tmp_path / "c", SR, progress=False)
    assert decoded == [str(cut)]  # only the truncated file is decoded again
    assert str(cut) not in new and str(whole) in new
    assert new.failed["path"].tolist() == [str(cut)]
    assert "truncated?" in new.error(str(cut)) and str(cut) in new.error(str(cut))
    np.testing.assert_array_equal(new[str(whole)], old[str(whole)])

    # an older cache of intact files only is kept as it is (no decoding, no copy)
    clean = build_audio_cache([str(whole)], tmp_path / "d", SR, progress=False)
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    meta.pop("version")
    (tmp_path / "d" / "meta.json").write_text(json.dumps(meta))
    before = (tmp_path / "d" / "audio.f16").stat().st_ino
    decoded.clear()
    checked.clear()
    again = build_audio_cache([str(whole)], tmp_path / "d", SR, progress=False)
    assert decoded == [] and checked == [str(whole)]
    assert (tmp_path / "d" / "audio.f16").stat().st_ino == before
    assert json.loads((tmp_path / "d" / "meta.json").read_text())["version"] >= 2
    np.testing.assert_array_equal(again[str(whole)], clean[str(whole)])
    checked.clear()
    build_audio_cache([str(whole)], tmp_path / "d", SR, progress=False)
    assert decoded == [] and checked == []  # from then on reused without any check


def test_truncated_training_clip_is_skipped_and_listed(tiny_cfg, tmp_path, caplog):
    src = ensure_dataset(tiny_cfg.data, progress=False)
    root = tmp_path / "cut"
    shutil.copytree(src, root)
    train = pd.read_csv(root / "train.csv")
    top = train["primary_label"].value_counts().index[0]
    rel = train.loc[train["primary_label"] == top, "filename"].iloc[0]
    clip = root / "train_audio" / rel
    whole = clip.read_bytes()
    clip.write_bytes(whole[: len(whole) // 2])
    scape = sorted((root / "test_soundscapes").glob("*.ogg"))[0]
    _cut(scape, scape)  # a labelled soundscape cut short: its windows are not scored
    with open_dict(tiny_cfg):
        tiny_cfg.data.demo = None
        tiny_cfg.data.root = str(root)
    with caplog.at_level(logging.WARNING, logger="birdsweep"):
        summary = run_kfold(tiny_cfg)
    assert summary.n_bad_files == 1 and np.isfinite(summary.cv_macro_auc)
    client = MlflowClient(tiny_cfg.logger.tracking_uri)
    bad = pd.read_csv(client.download_artifacts(summary.run_id, "bad_audio_files.csv"))
    assert len(bad) == 1 and bad["path"].iloc[0].endswith(rel)
    assert re.search(r"decodes to [\d.]+ s, but it ends inside an Ogg page", bad["error"].iloc[0])
    logs = " ".join(r.getMessage() for r in caplog.records)
    assert f"{scape}: decodes to" in logs and "undecodable soundscapes dropped" in logs


# ------------------------------------------------------------------------------ inference


def _fake_fold(path: Path) -> Path:
    """A fold checkpoint in the real format holding a random-weight tiny model."""
    cfg = OmegaConf.create(
        {
            "model": {
                "_target_": "birdsweep.model.sed.SEDModel",
                "backbone": "mobilenetv3_small_050",
                "pretrained": False,
                "frontend": {"_target_": "birdsweep.features.frontend.MelFrontend", "n_mels": 32},
            },
            "data": {"sample_rate": SR, "window_seconds": 5.0},
        }
    )
    torch.manual_seed(0)
    model = build(cfg.model, num_classes=len(LABELS))
    state = {"state_dict": model.state_dict(), "labels": LABELS, "config": OmegaConf.to_yaml(cfg)}
    save_checkpoint(path, {**state, "fold": 0, "epoch": 0, "val_macro_auc": 0.5})
    return path


def test_truncated_soundscapes_keep_every_row_with_a_warning(tmp_path, capsys, caplog):
    ens = tmp_path / "ensemble"
    export_ensemble(select_checkpoints([_fake_fold(tmp_path / "f" / "fold0" / "best.pt")]), ens,
                    dynamo=False, shifts=[0.0])  # fmt: skip
    audio = tmp_path / "audio"
    audio.mkdir()
    _write(audio / "whole.ogg", 60.0)
    _cut(_write(tmp_path / "s.ogg", 60.0), audio / "cutogg.ogg")  # no declared length: 12 rows
    _cut(_write(tmp_path / "s.wav", 40.0), audio / "cutwav.wav")  # header: 40 s = 8 rows
    out = tmp_path / "sub.csv"
    with caplog.at_level(logging.WARNING, logger="birdsweep"):
        rc = main(["infer", "--model", str(ens), "--audio", str(audio), "--out", str(out),
                   "--combine", "mean", "--no-progress"])  # fmt: skip
    assert rc == 0
    sub = pd.read_csv(out).set_index("row_id")
    stem = sub.index.str.rsplit("_", n=1).str[0]
    assert stem.value_counts().to_dict() == {"whole": 12, "cutogg": 12, "cutwav": 8}
    assert sub.loc[stem == "cutogg"].index.tolist() == [f"cutogg_{5 * k}" for k in range(1, 13)]
    assert sub.loc[stem == "cutwav"].index.tolist() == [f"cutwav_{5 * k}" for k in range(1, 9)]
    assert (sub.loc[stem == "whole"].to_numpy() > 0).all()
    logs = [r.getMessage() for r in caplog.records]
    for name, decoded, total in (("cutogg.ogg", 6, 12), ("cutwav.wav", 4, 8)):
        rows = sub.loc[stem == name.split(".")[0]].to_numpy()
        assert (rows[:decoded] > 0).all() and (rows[decoded:] == 0).all()
        hits = [m for m in logs if f"{name}: decodes to" in m and "(truncated?)" in m]
        filled = f"({decoded} window(s) decoded, {total - decoded} filled with 0"
        assert len(hits) == 1 and filled in hits[0], logs
    assert "fail_windows=12" in next(m for m in logs if "cutogg.ogg: decodes" in m)
    assert "of the 40.00 s its header declares" in next(m for m in logs if "cutwav.wav:" in m)
    assert "2 file(s) could not be decoded" in capsys.readouterr().out
