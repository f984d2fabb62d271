"""What names a job in MLflow: its recipe (Hydra group choices and overrides) and git commit.

Two recipes trained with the default ``task_name`` were both runs named ``train``; the parent
run is now named after its recipe (``experiment=<name>``, or ``model·loss·aug``) and carries the
group choices, the command-line overrides and the git commit as tags, which the fold runs
inherit, so runs can be grouped and compared by recipe in the MLflow UI.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

# group choices of conf/train.yaml that name a recipe, in this order
NAME_GROUPS = ("model", "loss", "aug")
CHOICE_TAG = "birdsweep.choice."  # + group, e.g. birdsweep.choice.model = sed_small
OVERRIDES_TAG = "birdsweep.overrides"
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own tag: the UI shows and links it


def hydra_choices() -> tuple[dict[str, str], list[str]]:
    """The running Hydra job's group choices (``hydra/*`` left out) and task overrides;
    empty outside ``python run.py`` (e.g. ``run_kfold`` called from a notebook)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}, []
    hc = HydraConfig.get()
    choices = {
        str(k): str(v)
        for k, v in hc.runtime.choices.items()
        if v is not None and not str(k).startswith("hydra")
    }
    return choices, [str(o) for o in hc.overrides.task]


def recipe_name(choices: dict[str, str], fallback: str) -> str:
    """``experiment=<name>`` when an experiment file was chosen, else ``model·loss·aug``
    (``fallback`` without Hydra choices)."""
    if choices.get("experiment"):
        return f"experiment={choices['experiment']}"
    parts = [choices[g] for g in NAME_GROUPS if g in choices]
    return "·".join(parts) if parts else fallback


def git_commit(folder: str | Path | None = None) -> str | None:
    """HEAD of the git checkout holding ``folder`` (default: the current folder, where
    ``python run.py`` was started), ``+dirty`` appended when tracked files differ from it;
    None outside a checkout or without git."""
    folder = Path(folder or Path.cwd())
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head or None


def recipe_tags(choices: dict[str, str], overrides: list[str]) -> dict[str, str]:
    """Tags of a job's runs: one per group choice, the overrides and the git commit."""
    tags = {f"{CHOICE_TAG}{k}": v for k, v in sorted(choices.items())}
    if overrides:
        tags[OVERRIDES_TAG] = " ".join(overrides)[:5000]
    commit = git_commit()
    if commit:
        tags[GIT_COMMIT_TAG] = commit
    return tags
