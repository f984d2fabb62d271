"""The error-analysis report (``birdsweep report``) of one tiny trained run."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from birdsweep.cli import main
from birdsweep.data.metadata import DataError
from birdsweep.evaluate.report import (
    PAIR_COLUMNS,
    _resolve_data_root,
    confused_pairs,
    score_matrix,
    write_report,
)

GRID_COLS = 6
PANEL_PX = 270  # plots.curve_grid panel width (2.7 in) at the default 100 dpi


@pytest.fixture(scope="module")
def trained(tiny_run):
    """One tiny 2-fold run: ``(run_id, tracking_uri, root)``."""
    cfg, summary = tiny_run
    return summary.run_id, str(cfg.logger.tracking_uri), Path(cfg.paths.root_dir)


@pytest.fixture(scope="module")
def report(trained, tmp_path_factory):
    """The report of :func:`trained`, written once: ``(page, out_dir)``."""
    run_id, uri, _ = trained
    out = tmp_path_factory.mktemp("report_out")
    return write_report(run_id, out, uri, duration_sample=None), out


def test_report_writes_every_plot_and_embeds_it(report):
    page, out = report
    assert page == out / "report.html" and page.is_file()
    pngs = sorted(p.name for p in out.glob("*.png"))
    expected = {
        "auc_by_train_clips.png",
        "auc_scatter.png",
        "roc_oof_p1.png",
        "pr_oof_p1.png",
        "roc_soundscape_p1.png",
        "pr_soundscape_p1.png",
        "confusion_oof.png",
        "confusion_soundscape.png",
        "eda_zipf.png",
        "eda_durations.png",
        "eda_class_name.png",
        "eda_rating.png",
    }
    assert set(pngs) == expected  # 6 classes: one ROC/PR page per source
    text = page.read_text()
    imgs = re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="([^"]+)">', text)
    assert sorted(imgs) == pngs  # every PNG embedded once, nothing linked from outside
    assert 'src="http' not in text and 'src="file' not in text
    titles = re.findall(r"<h2>([^<]+)</h2>", text)
    assert titles == [
        "Summary",
        "Per-class AUC and the long tail",
        "ROC and PR curves — held-out clips (OOF)",
        "Most confused class pairs — held-out clips (OOF)",
        "ROC and PR curves — soundscapes",
        "Most confused class pairs — soundscapes",
        "Data set",
    ]
    assert "Skipped" not in text  # the run's data.root exists here, so the EDA page is drawn


def test_pngs_are_valid_images_of_expected_size(report, trained):
    _, out = report
    run_id, uri, _ = trained
    client = MlflowClient(uri)
    per_class = pd.read_csv(client.download_artifacts(run_id, "per_class_auc.csv", str(out / "x")))
    for png in out.glob("*.png"):
        with Image.open(png) as im:
            im.verify()
        with Image.open(png) as im:
            w, h = im.size
        assert 400 <= w <= 4000 and 250 <= h <= 4000, (png.name, im.size)
    # a curve grid is one ~270 px panel per class with positives and negatives (≤ 6 per row)
    n_oof = int(((per_class["n_oof_windows_pos"] > 0) & per_class["oof_auc"].notna()).sum())
    with Image.open(out / "roc_oof_p1.png") as im:
        w, h = im.size
    cols = min(GRID_COLS, n_oof)
    assert 0.85 * cols * PANEL_PX <= w <= 1.1 * cols * PANEL_PX
    assert h < w  # one row of panels for ≤ 6 classes
    with Image.open(out / "pr_soundscape_p1.png") as im:
        assert im.size[0] > w  # every soundscape class has positives: more panels than OOF


def test_confused_pairs_table(report, trained):
    _, out = report
    for src in ("oof", "soundscape"):
        pairs = pd.read_csv(out / f"confused_pairs_{src}.csv", dtype=str)
        assert tuple(pairs.columns) == PAIR_COLUMNS
        assert len(pairs) > 0
        assert (pairs["true_label"] != pairs["confused_label"]).all()
        score = pairs["mean_score_confused"].astype(float).to_numpy()
        assert (np.diff(score) <= 1e-12).all()  # most confused first
        assert pairs["true_name"].str.len().gt(0).all()  # names from taxonomy.csv common_name
    text = (out / "report.html").read_text()
    assert "frac_confused_above_true" in text and "Top " in text


def test_score_matrix_ignores_co_occurring_classes():
    # 3 classes; window 0 has classes 0 and 1 together, windows 1-2 only class 0
    y = np.array([[1, 1, 0], [1, 0, 0], [1, 0, 0], [0, 0, 1]], dtype=float)
    s = np.array([[0.9, 0.8, 0.1], [0.6, 0.7, 0.3], [0.5, 0.1, 0.2], [0.2, 0.5, 0.9]])
    mean, above = score_matrix(y, s)
    assert mean[0, 0] == pytest.approx((0.9 + 0.6 + 0.5) / 3)
    assert mean[0, 1] == pytest.approx((0.7 + 0.1) / 2)  # window 0 (class 1 present) left out
    assert mean[0, 2] == pytest.approx((0.1 + 0.3 + 0.2) / 3)
    assert above[0, 1] == pytest.approx(0.5)  # class 1 beats class 0 on window 1 only
    assert math.isnan(mean[1, 0])  # class 0 is on every window of class 1: nothing to average
    pairs = confused_pairs(y, s, ["a", "b", "c"], top_n=10, per_true_class=1)
    assert tuple(pairs.columns) == PAIR_COLUMNS
    assert list(zip(pairs["true_label"], pairs["confused_label"], strict=True)) == [
        ("c", "b"),
        ("a", "b"),
        ("b", "c"),
    ]


def test_report_is_logged_to_the_run(report, trained):
    run_id, uri, _ = trained
    _, out = report
    logged = {Path(a.path).name for a in MlflowClient(uri).list_artifacts(run_id, "report")}
    assert {p.name for p in out.iterdir() if p.is_file()} <= logged
    assert "report.html" in logged and "confusion_oof.png" in logged


def test_bad_run_id_is_a_clear_error(trained, tmp_path, caplog):
    _, uri, _ = trained
    with pytest.raises(ValueError, match="no-such-run.*no such MLflow run"):
        write_report("no-such-run", tmp_path / "r", uri)
    assert not (tmp_path / "r").exists()
    rc = main(
        ["report", "--run", "no-such-run", "--out", str(tmp_path / "r"), "--tracking-uri", uri]
    )
    assert rc == 2 and "no-such-run" in caplog.text


def test_fold_run_or_bad_data_root_is_a_clear_error(trained, tmp_path):
    run_id, uri, _ = trained
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    folds = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
    fold_id = folds[0].info.run_id
    with pytest.raises(FileNotFoundError, match=f"{fold_id}.*predictions.npz.*parent run"):
        write_report(fold_id, tmp_path / "r", uri)
    with pytest.raises(DataError, match="--data-root .*no train.csv"):
        write_report(run_id, tmp_path / "r", uri, data_root=tmp_path)


def test_missing_data_root_skips_the_data_page_with_a_note(tmp_path):
    root, note = _resolve_data_root(None, {"data": {"root": str(tmp_path / "gone")}})
    assert root is None and "--data-root" in note and "gone" in note
    root, note = _resolve_data_root(None, {})
    assert root is None and "data.root" in note
