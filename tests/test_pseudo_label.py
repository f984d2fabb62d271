"""Pseudo-labels: `birdsweep pseudo-label` writes soft labels that training reads back."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import open_dict

from birdsweep.cli import main
from birdsweep.data.prepare import ensure_dataset, prepare_data
from birdsweep.export.ensemble import export_ensemble
from birdsweep.export.select import select_checkpoints
from birdsweep.infer.pseudo import class_counts, pseudo_label, soft_labels, to_softmax
from birdsweep.train.kfold import run_kfold
from tests.conftest import TINY_DATA, TINY_MODEL, TINY_TRAINER, compose_config


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory, demo_cache):
    """A 2-fold × 1-epoch tiny run exported as one ONNX ensemble; returns (cfg, folder)."""
    root = tmp_path_factory.mktemp("pseudo_run")
    cfg = compose_config(TINY_DATA + TINY_MODEL + TINY_TRAINER + ["logger=none"], root=root)
    with open_dict(cfg):
        cfg.paths.cache_dir = str(demo_cache)
    torch.set_num_threads(2)
    summary = run_kfold(cfg)
    out = root / "ensemble"
    export_ensemble(select_checkpoints([summary.checkpoint_dir]), out, threads=1)
    return cfg, out


@pytest.fixture(scope="module")
def unlabelled(ensemble):
    cfg, _ = ensemble
    return ensure_dataset(cfg.data, progress=False) / "train_soundscapes"


@pytest.fixture(scope="module")
def all_windows(ensemble, unlabelled, tmp_path_factory):
    """Every window, untrimmed (floor 0, threshold 0): the reference for the rules."""
    _, ens = ensemble
    out = tmp_path_factory.mktemp("pl") / "all.csv"
    return pseudo_label(ens, unlabelled, out, floor=0.0, threshold=0.0, threads=1)


def _labels(ensemble) -> list[str]:
    return json.loads((ensemble[1] / "manifest.json").read_text())["labels"]


def test_soft_labels_rules_on_a_known_table():
    table = pd.DataFrame(
        {"row_id": ["a_5", "a_10", "a_15"], "x": [0.04, 0.3, 0.9], "y": [0.6, 0.2, 0.01]}
    )
    out = soft_labels(table, floor=0.05, threshold=0.5)
    assert out["row_id"].tolist() == ["a_5", "a_15"]
    np.testing.assert_allclose(out[["x", "y"]].to_numpy(), [[0.0, 0.6], [0.9, 0.0]], rtol=1e-6)
    assert class_counts(out, 0.5).to_dict() == {"x": 1, "y": 1}
    with pytest.raises(ValueError, match="--floor"):
        soft_labels(table, floor=-0.1, threshold=0.5)
    with pytest.raises(ValueError, match="--threshold"):
        soft_labels(table, floor=0.05, threshold=-1)


def test_to_softmax_recovers_the_softmax_of_the_logits():
    logits = torch.tensor([[[2.0, -1.0, 0.5], [-3.0, 4.0, 0.0]]])  # [N=1, M=2, C=3]
    got = to_softmax(torch.sigmoid(logits).numpy())
    np.testing.assert_allclose(got, torch.softmax(logits, dim=-1).numpy(), rtol=1e-5)


def test_softmax_activation_gives_distributions(ensemble, unlabelled, all_windows, tmp_path):
    labels = _labels(ensemble)
    df = pseudo_label(
        ensemble[1], unlabelled, tmp_path / "s.csv", floor=0, threshold=0, activation="softmax"
    )
    assert df["row_id"].tolist() == all_windows["row_id"].tolist()
    np.testing.assert_allclose(df[labels].to_numpy().sum(axis=1), 1.0, rtol=1e-5)
    # the default (auto) reads the training loss from the manifest: loss=ce -> softmax
    man = json.loads((ensemble[1] / "manifest.json").read_text())
    assert {m["loss"] for m in man["models"]} == {"ce"}
    np.testing.assert_allclose(all_windows[labels].to_numpy(), df[labels].to_numpy(), rtol=1e-5)
    sig = pseudo_label(
        ensemble[1], unlabelled, tmp_path / "g.csv", floor=0, threshold=0, activation="sigmoid"
    )
    assert not np.allclose(sig[labels].to_numpy().sum(axis=1), 1.0, rtol=1e-3)
    with pytest.raises(ValueError, match="--activation"):
        pseudo_label(ensemble[1], unlabelled, tmp_path / "x.csv", activation="relu")


def test_file_has_submission_shape(ensemble, unlabelled, all_windows, tmp_path):
    labels = _labels(ensemble)
    df = all_windows
    assert list(df.columns) == ["row_id", *labels]
    stems = sorted(p.stem for p in unlabelled.glob("*.ogg"))
    assert len(df) == df.attrs["n_windows"] == 4 * len(stems)  # 20 s soundscapes
    assert df["row_id"].tolist() == [f"{s}_{e}" for s in stems for e in (5, 10, 15, 20)]
    probs = df[labels].to_numpy()
    assert ((probs >= 0) & (probs <= 1)).all() and probs.std() > 0


def test_floor_and_threshold_rules(ensemble, unlabelled, all_windows, tmp_path):
    labels = _labels(ensemble)
    ref = all_windows[labels].to_numpy()
    floor = float(np.quantile(ref, 0.5))  # trims about half of the scores
    threshold = float(np.median(ref.max(axis=1)))  # keeps about half of the windows
    df = pseudo_label(
        ensemble[1], unlabelled, tmp_path / "p.csv", floor=floor, threshold=threshold, threads=1
    )
    v = df[labels].to_numpy()
    assert not ((v > 0) & (v < floor)).any()
    assert (v.max(axis=1) >= threshold).all()
    trimmed = np.where(ref < floor, 0.0, ref)
    want = trimmed.max(axis=1) >= threshold
    assert 0 < want.sum() < len(ref)  # the rules really drop some windows and keep others
    assert df["row_id"].tolist() == all_windows["row_id"][want].tolist()
    np.testing.assert_allclose(v, trimmed[want], rtol=1e-6)
    back = pd.read_csv(tmp_path / "p.csv")  # the file holds the same table
    assert list(back.columns) == ["row_id", *labels]
    assert back["row_id"].tolist() == df["row_id"].tolist()
    np.testing.assert_allclose(back[labels].to_numpy(), v, rtol=1e-6)
    assert df.attrs["class_counts"] == {
        lab: int((v[:, j] >= threshold).sum()) for j, lab in enumerate(labels)
    }

    none = pseudo_label(ensemble[1], unlabelled, tmp_path / "none.csv", threshold=1.01, threads=1)
    assert len(none) == 0 and none.attrs["n_windows"] == len(ref)
    empty = pd.read_csv(tmp_path / "none.csv")
    assert list(empty.columns) == ["row_id", *labels] and len(empty) == 0


def test_cli_prints_counts(ensemble, unlabelled, all_windows, tmp_path, capsys):
    labels = _labels(ensemble)
    out = tmp_path / "cli.csv"
    threshold = float(np.median(all_windows[labels].to_numpy().max(axis=1)))
    rc = main(
        ["pseudo-label", "--model", str(ensemble[1]), "--audio", str(unlabelled), "--out",
         str(out), "--threshold", str(threshold), "--floor", "0.01", "--threads", "1",
         "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    written = pd.read_csv(out)
    text = capsys.readouterr().out
    assert f"{len(written)} of {len(all_windows)} window(s) kept" in text
    for lab in labels:
        assert f"{lab}:{int((written[lab] >= threshold).sum())}" in text
    assert main(["pseudo-label", "--model", str(ensemble[1]), "--audio", str(unlabelled),
                 "--out", str(out), "--floor", "2"]) == 2  # fmt: skip


def test_written_file_trains(ensemble, unlabelled, tmp_path, demo_cache):
    out = tmp_path / "pseudo.csv"
    df = pseudo_label(ensemble[1], unlabelled, out, floor=0.05, threshold=0.0, threads=1)
    cfg = compose_config(
        TINY_DATA + TINY_MODEL + TINY_TRAINER + ["logger=none", f"data.pseudo_labels={out}"],
        root=tmp_path,
    )
    with open_dict(cfg):
        cfg.paths.cache_dir = str(demo_cache)
        cfg.data.folds = [0]
    data = prepare_data(cfg.data, cfg.paths.cache_dir, progress=False)
    assert len(data.pseudo.items) == len(df) > 0
    np.testing.assert_allclose(data.pseudo.targets, df.iloc[:, 1:].to_numpy(), rtol=1e-6)
    summary = run_kfold(cfg)
    assert len(summary.folds) == 1 and np.isfinite(summary.folds[0].val_macro_auc)
