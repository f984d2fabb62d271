"""MLflow runs named and tagged by recipe (birdsweep.track.recipe); params without Hydra keys."""

from __future__ import annotations

import subprocess

from birdsweep.track.mlflow_tracker import flatten
from birdsweep.track.recipe import git_commit, recipe_name, recipe_tags


def test_recipe_name_from_group_choices():
    choices = {"model": "sed_lite0", "loss": "bce", "aug": "noisy", "data": "demo"}
    assert recipe_name(choices, "train") == "sed_lite0·bce·noisy"
    assert recipe_name({**choices, "experiment": "finetune"}, "train") == "experiment=finetune"
    assert recipe_name({}, "my_task") == "my_task"  # run_kfold outside python run.py
    tags = recipe_tags(choices, ["loss=bce", "trainer.epochs=3"])
    assert tags["birdsweep.choice.loss"] == "bce" and tags["birdsweep.choice.data"] == "demo"
    assert tags["birdsweep.overrides"] == "loss=bce trainer.epochs=3"


def test_git_commit_and_dirty_flag(tmp_path):
    assert git_commit(tmp_path) is None  # not a checkout
    git = ["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.txt").write_text("1")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert git_commit(tmp_path) == head.strip()
    (tmp_path / "untracked.txt").write_text("x")  # untracked files do not count
    assert git_commit(tmp_path) == head.strip()
    (tmp_path / "a.txt").write_text("2")
    assert git_commit(tmp_path) == head.strip() + "+dirty"


def test_params_leave_out_hydra_instantiation_keys():
    cfg = {"model": {"_target_": "x.Y", "backbone": "b", "frontend": {"_target_": "z", "n": 1}},
           "aug": {"_convert_": "all", "p": 0.5}, "optimizer": {"_partial_": True, "lr": 1e-3}}  # fmt: skip
    assert flatten(cfg) == {
        "model.backbone": "b",
        "model.frontend.n": 1,
        "aug.p": 0.5,
        "optimizer.lr": 1e-3,
    }
