"""Self-training input: pseudo-labelled soundscape windows mixed into training batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from omegaconf import open_dict

from birdsweep.data.dataset import PseudoMix
from birdsweep.data.prepare import ensure_dataset, prepare_data
from birdsweep.train.kfold import _fold_inputs, run_kfold


def _pseudo_csv(cfg, tmp_path):
    root = ensure_dataset(cfg.data, progress=False)
    labels = pd.read_csv(root / "taxonomy.csv")["primary_label"].astype(str).tolist()
    rows = []
    rng = np.random.default_rng(0)
    for f in sorted((root / "train_soundscapes").glob("*.ogg")):
        n = int(sf.info(f).duration // 5)
        for w in range(n):
            rows.append(
                {
                    "row_id": f"{f.stem}_{5 * (w + 1)}",
                    **dict(zip(labels, rng.random(len(labels)) * 0.5, strict=True)),
                }
            )
    path = tmp_path / "pseudo.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path, len(rows)


def test_pseudo_windows_split_by_soundscape_and_mixed(tiny_cfg, tmp_path):
    path, n_rows = _pseudo_csv(tiny_cfg, tmp_path)
    with open_dict(tiny_cfg):
        tiny_cfg.data.pseudo_labels = str(path)
        tiny_cfg.data.pseudo_prob = 0.5
    data = prepare_data(tiny_cfg.data, tiny_cfg.paths.cache_dir, progress=False)
    ps = data.pseudo
    assert len(ps.items) == n_rows
    by_file = pd.DataFrame({"file": [p for p, _ in ps.items], "fold": ps.folds})
    assert (by_file.groupby("file")["fold"].nunique() == 1).all()  # a soundscape stays whole
    for k in range(int(tiny_cfg.data.n_folds)):
        loss_fn = type("L", (), {"secondary_target": 0.5, "rating_weighted": False})()
        train_ds = _fold_inputs(tiny_cfg, data, k, loss_fn, None).train_ds
        assert isinstance(train_ds, PseudoMix)
        held_out = set(by_file.loc[by_file["fold"] == k, "file"])
        assert not held_out & {p for p, _ in train_ds.windows.items}
        soft = sum(0 < float(train_ds[i][1].max()) < 1 for i in range(len(train_ds)))
        assert 0 < soft < len(train_ds)  # some items are pseudo windows, some are clips


def test_kfold_trains_with_pseudo_labels(tiny_cfg, tmp_path):
    path, _ = _pseudo_csv(tiny_cfg, tmp_path)
    with open_dict(tiny_cfg):
        tiny_cfg.data.pseudo_labels = str(path)
    summary = run_kfold(tiny_cfg)
    assert len(summary.folds) == 2 and np.isfinite(summary.cv_macro_auc)


def test_missing_pseudo_file_names_the_key(tiny_cfg, tmp_path):
    with open_dict(tiny_cfg):
        tiny_cfg.data.pseudo_labels = str(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="data.pseudo_labels"):
        run_kfold(tiny_cfg)


class _Items:
    """A minimal indexable of tagged items: TrainCrops-like (wave, target, weight) items, or
    Windows-like (wave, target) ones with ``repeats=0``."""

    def __init__(self, n: int, tag: float, repeats: int = 1):
        self.n, self.tag, self.repeats = n, tag, repeats

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        return (self.tag, self.tag, 1.0) if self.repeats else (self.tag, self.tag)

    def set_epoch(self, epoch: int) -> None:
        pass


@pytest.mark.parametrize(("n_windows", "want"), [(5, 5 / 55), (500, 0.5), (0, 0.0)])
def test_pseudo_rate_is_capped_by_the_number_of_windows(n_windows, want):
    clips = _Items(100, 0.0, repeats=2)  # 50 clips, each drawn twice per epoch
    mix = PseudoMix(clips, _Items(n_windows, 1.0, repeats=0), prob=0.5, seed=3)
    assert mix.rate == pytest.approx(want)
    drawn = 0
    for epoch in range(20):
        mix.set_epoch(epoch)
        drawn += sum(mix[i][0] == 1.0 for i in range(len(mix)))
    n = 20 * len(mix)
    assert abs(drawn - want * n) <= 4 * np.sqrt(n * want * (1 - want)) + 1
