"""A changed data folder is never trained on with stale folds, and train.csv rows are sane:
fold reuse is keyed on the data as well as the config, repeated files are dropped (or refused)
so no file sits in training and validation, and paths stay inside ``train_audio/``."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import open_dict

from birdsweep.data.metadata import DataError, load_metadata
from birdsweep.data.prepare import ensure_dataset, prepare_data
from birdsweep.train.kfold import run_kfold


@pytest.fixture
def data_copy(tiny_cfg, tmp_path):
    """``(cfg, root)``: the tiny config pointed at a private copy of the tiny demo set."""
    root = tmp_path / "data"
    shutil.copytree(ensure_dataset(tiny_cfg.data, progress=False), root)
    with open_dict(tiny_cfg):
        tiny_cfg.data.demo = None
        tiny_cfg.data.root = str(root)
    return tiny_cfg, root


def _fingerprint(cfg) -> str:
    return prepare_data(cfg.data, cfg.paths.cache_dir, progress=False).fingerprint()


def _relabel(root: Path, n: int) -> None:
    """Give the first ``n`` clips of the largest class the label of another class."""
    train = pd.read_csv(root / "train.csv")
    counts = train["primary_label"].value_counts()
    rows = train.index[train["primary_label"] == counts.index[0]][:n]
    train.loc[rows, "primary_label"] = counts.index[1]
    train.to_csv(root / "train.csv", index=False)


def test_fingerprint_follows_labels_rows_and_audio_not_the_rest(data_copy):
    cfg, root = data_copy
    before = _fingerprint(cfg)
    assert _fingerprint(cfg) == before  # same data: same key (folds reused)
    (root / "README.md").write_text("notes")  # a file training does not read
    assert _fingerprint(cfg) == before

    _relabel(root, 2)
    relabelled = _fingerprint(cfg)
    assert relabelled != before

    train = pd.read_csv(root / "train.csv")
    train.iloc[:-3].to_csv(root / "train.csv", index=False)
    dropped = _fingerprint(cfg)
    assert dropped not in (before, relabelled)

    clip = root / "train_audio" / train["filename"].iloc[0]
    stat = clip.stat()
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # audio replaced
    assert _fingerprint(cfg) != dropped


def test_changed_data_retrains_instead_of_reusing_folds(data_copy):
    cfg, root = data_copy
    first = run_kfold(cfg)
    assert not any(r.reused for r in first.folds)

    again = run_kfold(cfg)  # unchanged: both folds reused, same CV
    assert all(r.reused for r in again.folds)
    assert again.cv_macro_auc == pytest.approx(first.cv_macro_auc)

    train = pd.read_csv(root / "train.csv")  # 5 clips dropped: no shape error, new folds
    train.iloc[:-5].to_csv(root / "train.csv", index=False)
    changed = run_kfold(cfg)
    assert not any(r.reused for r in changed.folds)
    assert changed.checkpoint_dir != first.checkpoint_dir


def test_repeated_files_are_dropped_with_a_warning_and_never_validated_on(data_copy, caplog):
    cfg, root = data_copy
    train = pd.read_csv(root / "train.csv")
    repeated = train.iloc[:6]
    pd.concat([train, repeated]).to_csv(root / "train.csv", index=False)

    with caplog.at_level(logging.WARNING, logger="birdsweep.data.metadata"):
        data = prepare_data(cfg.data, cfg.paths.cache_dir, progress=False)
    assert "6 file(s) listed more than once" in caplog.text
    assert repeated["filename"].iloc[0] in caplog.text
    assert len(data.clips) == len(train)
    assert data.clips["path"].is_unique
    for k in sorted(set(data.clips["fold"]) - {-1}):  # no file in training and validation
        val = set(data.clips.loc[data.clips["fold"] == k, "path"])
        fit = set(data.clips.loc[data.clips["fold"] != k, "path"])
        assert not val & fit


def test_a_file_listed_with_two_labels_is_refused(data_copy):
    _, root = data_copy
    train = pd.read_csv(root / "train.csv")
    other = train[train["primary_label"] != train["primary_label"].iloc[0]].iloc[0]
    twin = train.iloc[[0]].assign(primary_label=other["primary_label"])
    pd.concat([train, twin]).to_csv(root / "train.csv", index=False)
    with pytest.raises(DataError, match="more than once with different labels") as exc:
        load_metadata(root)
    assert train["filename"].iloc[0] in str(exc.value)


@pytest.mark.parametrize("name", ["../taxonomy.csv", "a/../../../etc/passwd", "/etc/passwd", ""])
def test_a_path_outside_train_audio_is_refused_naming_the_row(data_copy, name):
    _, root = data_copy
    train = pd.read_csv(root / "train.csv")
    train.loc[3, "filename"] = name
    train.to_csv(root / "train.csv", index=False)
    with pytest.raises(DataError, match=r"train\.csv row 5: filename .* is not a path inside"):
        load_metadata(root)


def test_an_empty_train_csv_says_so(data_copy):
    _, root = data_copy
    pd.read_csv(root / "train.csv").iloc[:0].to_csv(root / "train.csv", index=False)
    with pytest.raises(DataError, match="train.csv: has a header but no rows"):
        load_metadata(root)
