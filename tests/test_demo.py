"""Tests of the synthetic BirdCLEF 2025-layout demo dataset (tiny configs, a few seconds)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from birdsweep.data import demo
from birdsweep.data.demo import generate_demo_dataset
from birdsweep.data.demo.layout import _S_SPECIES
from birdsweep.data.demo.plan import _clip_counts, _train_rows
from birdsweep.data.demo.scenes import _render_call
from birdsweep.data.demo.species import _make_species, _sample_params

TINY = dict(
    n_classes=6,
    clips_per_class_max=3,
    soundscape_seconds=15,
    n_train_soundscapes=2,
    n_test_soundscapes=2,
    progress=False,
)
CSVS = ("taxonomy.csv", "train.csv", "sample_submission.csv", "test_soundscapes_labels.csv")


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:
    return generate_demo_dataset(tmp_path_factory.mktemp("demo") / "data", seed=0, **TINY)


def _read(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / name, dtype={"primary_label": str})


def test_layout_and_columns(ds: Path) -> None:
    for name in (*CSVS, "README.md", ".complete"):
        assert (ds / name).is_file(), name
    assert list(_read(ds, "taxonomy.csv").columns) == list(demo.TAXONOMY_COLUMNS)
    assert list(_read(ds, "train.csv").columns) == [
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
    ]
    train_scapes = [p.stem for p in (ds / "train_soundscapes").glob("*.ogg")]
    test_scapes = [p.stem for p in (ds / "test_soundscapes").glob("*.ogg")]
    assert len(train_scapes) == 2 and len(test_scapes) == 2
    assert all(re.fullmatch(r"H\d\d_2023\d{4}_\d{6}", s) for s in train_scapes), train_scapes
    assert all(re.fullmatch(r"soundscape_\d{7}", s) for s in test_scapes), test_scapes
    assert not list(ds.parent.glob(".data.partial-*")), "temp folder left behind"
    readme = (ds / "README.md").read_text()
    assert "synthetic" in readme and "seed: 0" in readme and "noise: moderate" in readme


def test_taxonomy(ds: Path) -> None:
    tax = pd.read_csv(ds / "taxonomy.csv", dtype=str)
    labels = tax["primary_label"].tolist()
    assert len(labels) == 6 and len(set(labels)) == 6
    assert labels == sorted(labels)
    assert set(tax["class_name"]) <= {"Aves", "Amphibia", "Insecta", "Mammalia"}
    assert (tax["class_name"] != "Aves").any(), "expected at least one non-bird"
    for _, row in tax.iterrows():
        if row["class_name"] == "Aves":
            assert row["primary_label"].isalnum() and row["primary_label"][:6].isalpha()
            assert row["primary_label"].islower() and 6 <= len(row["primary_label"]) <= 7
        else:
            assert row["primary_label"].isdigit()
            assert row["primary_label"] == row["inat_taxon_id"]


def test_label_order_matches_everywhere(ds: Path) -> None:
    labels = _read(ds, "taxonomy.csv")["primary_label"].tolist()
    sub = pd.read_csv(ds / "sample_submission.csv")
    gt = pd.read_csv(ds / "test_soundscapes_labels.csv")
    assert list(sub.columns) == ["row_id", *labels]
    assert list(gt.columns) == ["row_id", *labels]
    assert sub["row_id"].tolist() == gt["row_id"].tolist()
    values = sub[labels].to_numpy()
    assert np.allclose(values, 1.0 / len(labels))


def test_train_csv_and_audio(ds: Path) -> None:
    train = _read(ds, "train.csv")
    labels = set(_read(ds, "taxonomy.csv")["primary_label"])
    assert set(train["primary_label"]) == labels, "every species needs a training clip"
    counts = train["primary_label"].value_counts()
    assert counts.max() == 3 and counts.min() == 1, "long-tailed counts 1..clips_per_class_max"
    assert train["filename"].is_unique
    assert set(train["collection"]) <= {"XC", "iNat", "CSA"}
    ratings = train["rating"].to_numpy()
    assert ((ratings >= 0) & (ratings <= 5)).all() and np.allclose(
        ratings * 2, np.round(ratings * 2)
    )
    for _, row in train.iterrows():
        assert row["filename"].startswith(f"{row['primary_label']}/")
        secondary = ast.literal_eval(row["secondary_labels"])
        assert isinstance(secondary, list) and set(secondary) <= labels - {row["primary_label"]}
        assert isinstance(ast.literal_eval(row["type"]), list)
        path = ds / "train_audio" / row["filename"]
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.format, info.subtype) == (
            32000,
            1,
            "OGG",
            "VORBIS",
        )
        assert 2.0 - 0.05 <= info.duration <= 30.0 + 0.05
        y, _ = sf.read(str(path), dtype="float32")
        assert np.abs(y).max() <= 1.0 and np.abs(y).max() > 0.1


def test_soundscapes_and_ground_truth(ds: Path) -> None:
    gt = pd.read_csv(ds / "test_soundscapes_labels.csv")
    stems = sorted(p.stem for p in (ds / "test_soundscapes").glob("*.ogg"))
    assert gt["row_id"].tolist() == [f"{s}_{end}" for s in stems for end in (5, 10, 15)]
    for folder in ("train_soundscapes", "test_soundscapes"):
        for path in (ds / folder).glob("*.ogg"):
            info = sf.info(str(path))
            assert (info.samplerate, info.channels) == (32000, 1)
            assert abs(info.duration - 15.0) < 0.05
    truth = gt.drop(columns="row_id").to_numpy()
    assert set(np.unique(truth)) <= {0, 1}
    positives = truth.sum(axis=0)
    assert (positives > 0).mean() >= 0.6, "too few species in the test soundscapes"
    train_labels = set(_read(ds, "train.csv")["primary_label"])
    present = {c for c, n in zip(gt.columns[1:], positives, strict=True) if n > 0}
    assert present <= train_labels


def test_deterministic_per_seed(ds: Path, tmp_path: Path) -> None:
    again = generate_demo_dataset(tmp_path / "again", seed=0, **TINY)
    other = generate_demo_dataset(tmp_path / "other", seed=1, **TINY)
    for name in CSVS:
        assert (ds / name).read_bytes() == (again / name).read_bytes(), name
    assert (ds / "train.csv").read_bytes() != (other / "train.csv").read_bytes()
    assert (ds / "taxonomy.csv").read_bytes() != (other / "taxonomy.csv").read_bytes()
    first = _read(ds, "train.csv")["filename"].iloc[0]
    a, _ = sf.read(str(ds / "train_audio" / first))
    b, _ = sf.read(str(again / "train_audio" / first))
    np.testing.assert_array_equal(a, b)
    stem = sorted((ds / "test_soundscapes").glob("*.ogg"))[0].name
    a, _ = sf.read(str(ds / "test_soundscapes" / stem))
    b, _ = sf.read(str(again / "test_soundscapes" / stem))
    np.testing.assert_array_equal(a, b)


def test_species_stable_when_adding_classes() -> None:
    def make(n: int) -> list[demo.Species]:
        used: set[str] = set()
        out: list[demo.Species] = []
        for i in range(n):
            out.append(_make_species(0, _S_SPECIES, i, out, used))
        return out

    small, big = make(6), make(10)
    assert small == big[:6]


def test_secondary_share_and_families() -> None:
    used: set[str] = set()
    species: list[demo.Species] = []
    for i in range(40):
        species.append(_make_species(3, _S_SPECIES, i, species, used))
    assert len({s.family for s in species}) >= 12
    assert any(s.sibling_of for s in species), "expected some confusable near-copies"
    rng = np.random.default_rng(0)
    rows = _train_rows(species, _clip_counts(40, 14, rng), rng)
    share = np.mean([r["secondary_labels"] != "[]" for r in rows])
    assert 0.03 < share < 0.25


def test_every_family_synthesises() -> None:
    assert len(demo.FAMILIES) >= 20
    rng = np.random.default_rng(0)
    for name, fam in demo.FAMILIES.items():
        sp = demo.Species(0, "x", 0, "", "", fam.class_name, name, _sample_params(name, rng))
        y = _render_call(sp, rng, 32000)
        assert y.ndim == 1 and len(y) > 50 and np.isfinite(y).all(), name
        assert abs(np.sqrt(np.mean(y**2)) - 1.0) < 1e-6, name
        spec = np.abs(np.fft.rfft(y)) ** 2
        low = np.fft.rfftfreq(len(y), 1 / 32000) < 1500
        if fam.class_name == "Mammalia":
            assert spec[low].sum() > 0.8 * spec.sum(), f"{name}: mammal energy below 1.5 kHz"


def test_hard_noise(tmp_path: Path) -> None:
    root = generate_demo_dataset(tmp_path / "hard", seed=0, noise="hard", **TINY)
    assert "noise: hard" in (root / "README.md").read_text()
    assert "distractor" in (root / "README.md").read_text()
    gt = pd.read_csv(root / "test_soundscapes_labels.csv")
    labels = _read(root, "taxonomy.csv")["primary_label"].tolist()
    assert list(gt.columns) == ["row_id", *labels]
    assert gt.drop(columns="row_id").to_numpy().sum() > 0


def test_second_call_is_a_no_op_and_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "d"
    generate_demo_dataset(out, seed=0, **TINY)
    marker = out / ".complete"
    before = {p: p.stat().st_mtime_ns for p in [marker, out / "train.csv"]}
    assert generate_demo_dataset(out, seed=0, **TINY) == out
    assert {p: p.stat().st_mtime_ns for p in before} == before
    with pytest.raises(FileExistsError, match="other parameters"):
        generate_demo_dataset(out, seed=1, **TINY)
    generate_demo_dataset(out, seed=1, overwrite=True, **TINY)
    assert '"seed": 1' in marker.read_text()


def test_refuses_to_replace_foreign_folder(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a demo dataset"):
        generate_demo_dataset(out, overwrite=True, **TINY)
    assert (out / "notes.txt").read_text() == "keep me"


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'loud'"):
        generate_demo_dataset(tmp_path / "x", noise="loud", **TINY)
    with pytest.raises(ValueError, match="soundscape_seconds"):
        generate_demo_dataset(tmp_path / "x", **{**TINY, "soundscape_seconds": 12})
    assert not (tmp_path / "x").exists()


def test_cli_demo_data_soundscape_counts(tmp_path):
    from birdsweep.cli import main

    out = tmp_path / "cli"
    args = ["demo-data", "--out", str(out), "--classes", "4", "--seed", "5"]
    assert main([*args, "--train-soundscapes", "1", "--test-soundscapes", "3"]) == 0
    assert len(list((out / "train_soundscapes").glob("*.ogg"))) == 1
    assert len(list((out / "test_soundscapes").glob("*.ogg"))) == 3
    labels = pd.read_csv(out / "test_soundscapes_labels.csv")
    assert len(labels) == 3 * 12  # 60 s soundscapes, one row per 5 s window
