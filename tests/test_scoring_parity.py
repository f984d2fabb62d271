"""One scoring path: the soundscape AUC a training run logs is the AUC of the ``submission.csv``
that ``birdsweep infer`` writes from an export of the same folds with the same settings, with the
folds' probabilities averaged (``mean``) or their ranks (``rank``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from birdsweep.cli import main
from birdsweep.scoring.context import FileMaxContext
from birdsweep.scoring.metric import score_submission


def _smallest_gap(y: np.ndarray, scores: np.ndarray) -> float:
    """Smallest distance between a positive's and a negative's score of any class."""
    gaps = [
        np.abs(scores[y[:, c], c][:, None] - scores[~y[:, c], c][None, :]).min()
        for c in range(y.shape[1])
        if 0 < y[:, c].sum() < len(y)
    ]
    return float(min(gaps))


def test_training_soundscape_auc_is_the_auc_of_the_submission(tiny_run, tmp_path):
    cfg, summary = tiny_run
    run = MlflowClient(cfg.logger.tracking_uri).get_run(summary.run_id)
    logged = run.data.metrics["soundscape_macro_auc"]  # the fold ensemble, mean over folds
    assert logged == summary.soundscape_macro_auc

    ens = tmp_path / "ensemble"
    rc = main(["export", "--checkpoints", summary.checkpoint_dir, "--combine", "mean",
               "--out", str(ens)])  # fmt: skip
    assert rc == 0
    man = json.loads((ens / "manifest.json").read_text())
    # the same settings: the run's test-time shifts and recording context travel in the
    # manifest (the default recipe uses both, so both are compared here)
    assert man["tta"]["shifts_seconds"] == list(cfg.tta.seconds) and len(cfg.tta.seconds) > 1
    assert man["context"]["file_max_power"] == float(cfg.postprocess.power) > 0
    assert sorted(m["checkpoint"] for m in man["models"]) == sorted(
        r.checkpoint for r in summary.folds
    )
    out = tmp_path / "submission.csv"
    root = Path(str(cfg.data.root))
    rc = main(["infer", "--model", str(ens), "--audio", str(root / "test_soundscapes"),
               "--out", str(out), "--no-progress"])  # fmt: skip
    assert rc == 0
    solution = pd.read_csv(root / "test_soundscapes_labels.csv")
    submitted = score_submission(solution, pd.read_csv(out))

    # training's window scores are the submission's, but for PyTorch vs onnxruntime arithmetic
    pred = np.load(Path(summary.checkpoint_dir) / "predictions.npz")
    labels = [str(x) for x in pred["labels"]]
    sub = pd.read_csv(out).set_index("row_id").loc[pred["soundscape_row_ids"], labels]
    diff = float(np.abs(sub.to_numpy() - pred["soundscape_scores"]).max())
    gap = _smallest_gap(pred["soundscape_targets"] >= 0.5, pred["soundscape_scores"])
    assert abs(submitted - logged) <= 1e-6, (
        f"submission AUC {submitted!r} vs logged {logged!r}: scores differ by up to {diff:.2e} "
        f"(PyTorch vs onnxruntime), the closest positive/negative pair by {gap:.2e}"
    )
    assert diff < 1e-5

    # the folds rank-averaged instead: training logs that AUC too, infer --combine rank writes it
    ranked = tmp_path / "ranked.csv"
    rc = main(["infer", "--model", str(ens), "--audio", str(root / "test_soundscapes"),
               "--out", str(ranked), "--combine", "rank", "--no-progress"])  # fmt: skip
    assert rc == 0
    logged_rank = run.data.metrics["soundscape_macro_auc_rank"]
    assert abs(score_submission(solution, pd.read_csv(ranked)) - logged_rank) <= 1e-6

    # neighbour smoothing (postprocess.smooth): the same FileMaxContext on training's fold
    # probabilities, windows in time order per recording, equals infer --smooth's submission
    weights = [0.25, 0.5, 0.25]
    smoothed = tmp_path / "smoothed.csv"
    rc = main(["infer", "--model", str(ens), "--audio", str(root / "test_soundscapes"),
               "--out", str(smoothed), "--combine", "mean", "--smooth", *map(str, weights),
               "--no-progress"])  # fmt: skip
    assert rc == 0
    rows = pd.Series(pred["soundscape_row_ids"].astype(str))
    rec, end = rows.str.rsplit("_", n=1).str[0], rows.str.rsplit("_", n=1).str[1].astype(int)
    order = np.lexsort((end.to_numpy(), rec.to_numpy()))
    assert len(rows) == len(pd.read_csv(smoothed))  # every window is labelled here
    ctx = FileMaxContext(float(cfg.postprocess.power), tuple(weights))
    fold_probs = pred["soundscape_fold_probs"][:, order]  # [F, N, C]
    want = np.mean([ctx(f, rec.to_numpy()[order]) for f in fold_probs], axis=0)
    got = pd.read_csv(smoothed).set_index("row_id").loc[rows[order], labels].to_numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    plain = pd.read_csv(out).set_index("row_id").loc[rows[order], labels].to_numpy()
    # it changed the scores by far more than PyTorch vs onnxruntime arithmetic (a 1-epoch
    # model's scores are nearly flat, so the change itself is small)
    assert np.abs(got - plain).max() > 20 * max(diff, 1e-7)
