"""The default-recipe benchmark's per-class breakdown: AUC of classes binned by training clips."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.default_recipe import auc_by_clip_count  # noqa: E402


def test_auc_by_clip_count_bins_classes_by_training_clips(tmp_path):
    rng = np.random.default_rng(0)
    labels = ["rare", "few", "mid", "common", "absent"]
    n = 60
    targets = np.zeros((n, len(labels)), dtype=np.float32)
    for c in range(4):  # 'absent' has no positive window: skipped, as the metric does
        targets[rng.choice(n, 10, replace=False), c] = 1
    ours = targets + rng.normal(0, 0.1, targets.shape)  # ours separates every class
    ours[:, 0] = rng.random(n)  # ... except 'rare': chance
    row_ids = np.array([f"sc{i // 12}_{5 * (i % 12 + 1)}" for i in range(n)])
    np.savez(
        tmp_path / "predictions.npz",
        labels=np.array(labels),
        soundscape_row_ids=row_ids,
        soundscape_targets=targets,
        soundscape_scores=ours,
    )
    theirs = pd.DataFrame(targets * 0.5 + 0.25, index=row_ids, columns=labels)  # perfect
    theirs.iloc[:, 3] = 0.5  # ... except 'common': one constant score, AUC 0.5
    clips = {"rare": 1, "few": 3, "mid": 6, "common": 20, "absent": 2}
    train = pd.DataFrame({"primary_label": [k for k, v in clips.items() for _ in range(v)]})
    train.to_csv(tmp_path / "train.csv", index=False)

    rows = auc_by_clip_count(str(tmp_path), theirs, tmp_path / "train.csv")

    assert [r[:2] for r in rows] == [
        ("1-2 clips", 1),  # 'absent' (2 clips) has no positives: not counted
        ("3-4 clips", 1),
        ("5-8 clips", 1),
        (">= 9 clips", 1),
    ]
    by_bin = {r[0]: r[2:] for r in rows}
    assert by_bin["1-2 clips"][0] < 0.8 and by_bin["1-2 clips"][1] == 1.0
    assert by_bin["3-4 clips"] == (1.0, 1.0)
    assert by_bin[">= 9 clips"] == (1.0, 0.5)
