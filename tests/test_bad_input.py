"""Bad input: each case gets a clear message naming the file or key, and loses nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from mlflow.tracking import MlflowClient
from omegaconf import open_dict

from birdsweep.data.metadata import DataError
from birdsweep.data.prepare import ensure_dataset
from birdsweep.train.kfold import run_kfold


@pytest.fixture
def broken_copy(tiny_cfg, tmp_path) -> tuple[object, Path, dict[str, str]]:
    """A copy of the tiny demo set with one file of each kind of damage."""
    src = ensure_dataset(tiny_cfg.data, progress=False)
    root = tmp_path / "broken"
    shutil.copytree(src, root)
    train = pd.read_csv(root / "train.csv")
    # damage clips of the best-represented class so folds still have every class
    top = train["primary_label"].value_counts().index[0]
    files = train.loc[train["primary_label"] == top, "filename"].tolist()
    audio = root / "train_audio"
    damage = {
        "truncated": files[0],
        "zero_length": files[1],
        "silent": files[2],
        "missing": files[3],
    }
    data = (audio / damage["truncated"]).read_bytes()
    (audio / damage["truncated"]).write_bytes(data[: len(data) // 3][:200])
    (audio / damage["zero_length"]).write_bytes(b"")
    sf.write(
        audio / damage["silent"], np.zeros(32000, np.float32), 32000, format="OGG", subtype="VORBIS"
    )
    (audio / damage["missing"]).unlink()
    # a stereo 44.1 kHz file is fine: it is resampled and down-mixed
    other = train.loc[train["primary_label"] != top, "filename"].iloc[0]
    t = np.arange(44100 * 2) / 44100
    sf.write(
        audio / other,
        np.stack([np.sin(2e3 * t), np.sin(3e3 * t)], 1) * 0.3,
        44100,
        format="OGG",
        subtype="VORBIS",
    )
    with open_dict(tiny_cfg):
        tiny_cfg.data.demo = None
        tiny_cfg.data.root = str(root)
    return tiny_cfg, root, damage


def test_bad_files_are_skipped_counted_and_listed(broken_copy):
    cfg, root, damage = broken_copy
    summary = run_kfold(cfg)
    assert summary.n_bad_files == 4
    assert len(summary.folds) == 2 and np.isfinite(summary.cv_macro_auc)
    client = MlflowClient(cfg.logger.tracking_uri)
    parent = client.get_run(summary.run_id)
    assert parent.data.metrics["n_bad_audio_files"] == 4
    local = client.download_artifacts(summary.run_id, "bad_audio_files.csv")
    bad = pd.read_csv(local)
    for kind, rel in damage.items():
        row = bad[bad["path"].str.endswith(rel)]
        assert len(row) == 1, kind
    errors = " ".join(bad["error"])
    assert "file not found" in errors and "silent" in errors and "zero-length" in errors
    assert "malformed" in errors or "cannot decode" in errors


def test_label_missing_from_taxonomy_names_it(broken_copy):
    cfg, root, _ = broken_copy
    train = pd.read_csv(root / "train.csv")
    train.loc[0, "primary_label"] = "notaspecies"
    train.to_csv(root / "train.csv", index=False)
    with pytest.raises(DataError, match=r"train.csv.*notaspecies.*not in taxonomy"):
        run_kfold(cfg)


def test_missing_columns_name_the_file(broken_copy):
    cfg, root, _ = broken_copy
    pd.read_csv(root / "taxonomy.csv").drop(columns="primary_label").to_csv(
        root / "taxonomy.csv", index=False
    )
    with pytest.raises(DataError, match=r"taxonomy.csv: missing column"):
        run_kfold(cfg)


def test_unknown_backbone_names_the_key(tiny_cfg):
    tiny_cfg.model.backbone = "efficientnet_b99"
    with pytest.raises(ValueError, match=r"model.backbone.*efficientnet_b99"):
        run_kfold(tiny_cfg)


def test_non_finite_model_outputs_name_the_cause(tiny_cfg):
    """A model whose BatchNorm statistics hold NaN makes predict() stop with the cause, not a
    metric error about NaN scores far downstream (with and without AMP)."""
    import torch

    from birdsweep.config import build
    from birdsweep.train.loop import NonFiniteLossError, predict

    model = build(tiny_cfg.model, num_classes=3)
    waves = torch.utils.data.TensorDataset(torch.randn(4, 16000) * 0.1)
    assert np.isfinite(predict(model, waves, batch_size=2)).all()
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_var.fill_(float("nan"))
    for amp in (False, True):
        with pytest.raises(NonFiniteLossError, match="not finite"):
            predict(model, waves, batch_size=2, amp=amp)
