"""Small faults of issue "Faults and trust": MLflow telemetry, file modes, runs of killed jobs,
a full disk. Real processes, a real sqlite MLflow store and a real full filesystem where the
machine allows one; the one patch (torch's own write error) says why in its docstring.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from birdsweep.atomic import (
    WriteError,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    current_umask,
    temp_dir_next_to,
)
from birdsweep.config import build_artefact_model
from birdsweep.export.ensemble import ParityError, export_ensemble
from birdsweep.export.select import select_checkpoints
from birdsweep.track.mlflow_tracker import (
    HOST_TAG,
    PID_TAG,
    STARTED_TAG,
    MLflowTracker,
    owner_tags,
    sqlite_uri,
)
from birdsweep.train.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DEAD_PID = str(2**22 + 12345)  # above Linux's pid_max: no such process


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask() -> Iterator:
    """Set the process umask for one test; the old one comes back afterwards."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


# ------------------------------------------------------------------------ 1. MLflow telemetry

_PROBE = textwrap.dedent(
    """
    import importlib, json, os, sys
    importlib.import_module(sys.argv[1])  # the entry point first, as a user runs it
    import mlflow
    from mlflow.telemetry import get_telemetry_client, utils
    print(json.dumps({
        "env": os.environ.get("MLFLOW_DISABLE_TELEMETRY"),
        "disabled": utils.is_telemetry_disabled(),
        "client": get_telemetry_client() is not None,
        "ci": utils._IS_IN_CI_ENV_OR_TESTING or utils._IS_MLFLOW_DEV_VERSION,
    }))
    """
)


def _bare_env(home: Path, **extra: str) -> dict[str, str]:
    """No CI / pytest variables (MLflow turns telemetry off by itself under those)."""
    return {"PATH": os.environ["PATH"], "HOME": str(home), "PYTHONPATH": str(ROOT), **extra}


@pytest.mark.parametrize("entry", ["run", "birdsweep.cli"])
def test_mlflow_telemetry_is_off_for_every_entry_point(entry, tmp_path):
    """``run.py`` (training, sweeps) and the ``birdsweep`` command (export, infer, report, ...):
    importing them turns MLflow 3's telemetry off before mlflow is imported, so no telemetry
    client (which contacts an outside host) is ever made."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, entry],
        cwd=ROOT,
        env=_bare_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert not got["ci"]  # the probe's environment alone would leave telemetry on
    assert got == {"env": "true", "disabled": True, "client": False, "ci": False}


def test_a_telemetry_choice_of_your_own_is_kept(tmp_path):
    probe = "import os, birdsweep; print(os.environ['MLFLOW_DISABLE_TELEMETRY'])"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=_bare_env(tmp_path, MLFLOW_DISABLE_TELEMETRY="false"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "false"


# ---------------------------------------------------------------------------- 2. file modes


def test_current_umask_reads_without_changing_it(umask):
    for mask in (0o022, 0o077, 0o002):
        umask(mask)
        assert current_umask() == mask
        assert os.umask(mask) == mask  # unchanged by the read


@pytest.mark.parametrize("mask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_atomic_writes_follow_the_umask(mask, file_mode, dir_mode, umask, tmp_path):
    umask(mask)
    atomic_write_text(tmp_path / "a.txt", "x")
    atomic_write_json(tmp_path / "sub" / "b.json", {"a": 1})
    atomic_write_bytes(tmp_path / "c.bin", lambda f: f.write(b"x"))
    save_checkpoint(tmp_path / "best.pt", {"state_dict": {}})
    for name in ("a.txt", "sub/b.json", "c.bin", "best.pt"):
        assert _mode(tmp_path / name) == file_mode, name
    assert _mode(temp_dir_next_to(tmp_path / "ens", prefix=".ens.")) == dir_mode


def test_an_overwritten_file_keeps_its_mode(umask, tmp_path):
    """As ``open(path, "w")`` would: a file you made group-writable stays so."""
    umask(0o022)
    path = tmp_path / "submission.csv"
    path.write_text("old")
    path.chmod(0o664)
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o664


MODEL = {
    "_target_": "birdsweep.model.sed.SEDModel",
    "backbone": "mobilenetv3_small_050",
    "pretrained": False,
    "frontend": {"_target_": "birdsweep.features.frontend.MelFrontend", "n_mels": 32},
}


@pytest.fixture(scope="module")
def fold(tmp_path_factory) -> Path:
    """One random-weight fold checkpoint of a tiny model."""
    torch.manual_seed(0)
    labels = ["aaa", "bbb", "ccc"]
    model = build_artefact_model(OmegaConf.create(MODEL), "test", num_classes=len(labels))
    cfg = {"model": MODEL, "data": {"sample_rate": 32000, "window_seconds": 5.0}}
    path = tmp_path_factory.mktemp("fold") / "fold0" / "best.pt"
    save_checkpoint(
        path,
        {
            "state_dict": model.state_dict(),
            "labels": labels,
            "config": OmegaConf.to_yaml(OmegaConf.create(cfg)),
            "fold": 0,
            "epoch": 0,
            "val_macro_auc": 0.5,
        },
    )
    return path


# ------------------------------------------- 3. MLflow runs of killed exports and training jobs


def _stale_run(client: MlflowClient, exp: str, tags: dict[str, str], **owner: str) -> str:
    """A RUNNING run as a job that was killed (or still runs) leaves it."""
    return client.create_run(exp, tags={**tags, **owner}).info.run_id


def _status(client: MlflowClient, run_id: str) -> str:
    return client.get_run(run_id).info.status


def test_export_run_ends_failed_and_closes_runs_of_killed_exports(fold, umask, tmp_path):
    """A failed export's run ends FAILED; a later export marks the runs of killed exports
    KILLED and leaves a live export's run (this process) RUNNING. The ensemble folder and
    its files get the umask's modes, not mkdtemp's 0700 / mkstemp's 0600."""
    umask(0o022)
    uri = sqlite_uri(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    exp = client.create_experiment("birdsweep")
    tags = {"ensemble": "true"}
    me = owner_tags()
    killed = _stale_run(client, exp, tags, **{**me, PID_TAG: DEAD_PID})
    live = _stale_run(client, exp, tags, **me)
    legacy = _stale_run(client, exp, tags)  # an export of an older birdsweep: no owner tags
    sources = select_checkpoints([fold])
    with pytest.raises(ParityError):
        export_ensemble(sources, tmp_path / "ens", dynamo=False, tolerance=-1.0, tracking_uri=uri)
    assert _status(client, killed) == "KILLED" and _status(client, legacy) == "KILLED"
    assert _status(client, live) == "RUNNING"
    ensembles = client.search_runs([exp], "tags.ensemble = 'true'")
    failed = [r for r in ensembles if r.info.run_id not in (killed, live, legacy)]
    assert [r.info.status for r in failed] == ["FAILED"]
    assert failed[0].data.tags[PID_TAG] == str(os.getpid())

    res = export_ensemble(sources, tmp_path / "ens", dynamo=False, tracking_uri=uri)
    assert _status(client, res.mlflow_run_id) == "FINISHED"
    assert _status(client, live) == "RUNNING"
    out = tmp_path / "ens"
    assert _mode(out) == 0o755
    assert {p.name: _mode(p) for p in out.iterdir()} == {
        "ensemble.onnx": 0o644,
        "manifest.json": 0o644,
    }


def test_training_closes_only_runs_whose_process_is_gone(tmp_path):
    """``close_stale`` (run before every training job) marks KILLED the runs of dead
    processes, a dead owner's pid now reused by another process included, and the runs of
    older birdsweep versions; a live run and a run of another host stay RUNNING."""
    tags = {"config_hash": "abc", "task_name": "train"}
    tracker = MLflowTracker(sqlite_uri(tmp_path / "mlflow.db"), tags=tags)
    client, exp = tracker.client, tracker.experiment_id
    me = owner_tags()
    runs = {
        "dead": _stale_run(client, exp, tags, **{**me, PID_TAG: DEAD_PID}),
        "pid reused": _stale_run(client, exp, tags, **{**me, STARTED_TAG: "1"}),
        "no owner tags": _stale_run(client, exp, tags),
        "live": _stale_run(client, exp, tags, **me),
        "other host": _stale_run(client, exp, tags, **{**me, HOST_TAG: "not-" + me[HOST_TAG]}),
        "other config": _stale_run(client, exp, {**tags, "config_hash": "def"}),
    }
    live_child = _stale_run(
        client, exp, {**tags, "mlflow.parentRunId": runs["live"]}, **me
    )  # a fold of the live job
    assert tracker.close_stale(tags) == 3
    got = {k: _status(client, r) for k, r in runs.items()}
    assert got == {
        "dead": "KILLED",
        "pid reused": "KILLED",
        "no owner tags": "KILLED",
        "live": "RUNNING",
        "other host": "RUNNING",
        "other config": "RUNNING",
    }
    assert _status(client, live_child) == "RUNNING"
    assert me[HOST_TAG] == socket.gethostname()


_JOB = textwrap.dedent(
    """
    import sys
    from birdsweep.track.mlflow_tracker import MLflowTracker
    t = MLflowTracker(sys.argv[1], tags={"config_hash": "abc", "task_name": "train"})
    t.start()
    with t.child("fold0"):
        print(t.parent_id, flush=True)
        sys.stdin.read()  # runs until killed
    """
)


def test_the_same_job_started_twice_leaves_the_first_running(tmp_path):
    """A real first job (another process) keeps its runs RUNNING while it lives; once it is
    killed, the next job marks them KILLED."""
    uri = sqlite_uri(tmp_path / "mlflow.db")
    first = subprocess.Popen(
        [sys.executable, "-c", _JOB, uri],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        parent = first.stdout.readline().strip()
        assert parent, "the first job did not start"
        tags = {"config_hash": "abc", "task_name": "train"}
        second = MLflowTracker(uri, tags=tags)
        assert second.close_stale(tags) == 0
        assert _status(second.client, parent) == "RUNNING"
    finally:
        first.kill()
        first.wait(timeout=60)
    assert second.close_stale(tags) == 1
    runs = second.client.search_runs([second.experiment_id])
    assert sorted(r.info.status for r in runs) == ["KILLED", "KILLED"]  # parent and fold


# -------------------------------------------------------------------------------- 4. disk full


def _unshare_works() -> bool:
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return False
    probe = ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"]
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


_FILL = textwrap.dedent(
    """
    import sys, torch
    from birdsweep.train.checkpoint import load_checkpoint, save_checkpoint
    path = sys.argv[1] + "/fold0/best.pt"
    save_checkpoint(path, {"state_dict": {"w": torch.ones(10)}})
    try:
        save_checkpoint(path, {"state_dict": {"w": torch.zeros(1_000_000)}})  # 4 MB
    except Exception as exc:
        print(type(exc).__name__, exc, sep=": ")
    print(load_checkpoint(path)["state_dict"]["w"].sum().item())
    import os; print(os.listdir(sys.argv[1] + "/fold0"))
    """
)


@pytest.mark.skipif(not _unshare_works(), reason="no user + mount namespaces here")
def test_a_full_disk_names_the_checkpoint_and_the_free_space(tmp_path):
    """A real full file system: a 1 MB tmpfs mounted in a private mount namespace. torch says
    only ``enforce fail at inline_container.cc ... unexpected pos``; birdsweep says which file
    and how much space is left, and the previous checkpoint is kept whole."""
    disk = tmp_path / "disk"
    disk.mkdir()
    script = f'mount -t tmpfs -o size=1m tmpfs "{disk}" && exec "{sys.executable}" -c "$0" "{disk}"'
    out = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, _FILL],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    error, total, left = out.stdout.strip().splitlines()
    assert error.startswith(
        f"WriteError: cannot write {disk}/fold0/best.pt: no space left on device ("
    )
    assert error.endswith(" free)") and "\n" not in error
    assert total == "10.0"  # the old checkpoint, whole
    assert left == "['best.pt']"  # no temp file left behind


def test_torch_write_failure_becomes_one_clear_error(fold, tmp_path, monkeypatch):
    """torch's own failed-write error, as a checkpoint written by path reports it. A full
    disk is produced for real only in the test above (it needs mount namespaces), so here
    ``torch.save`` is patched to raise that error."""
    path = tmp_path / "fold0" / "best.pt"
    path.parent.mkdir()
    shutil.copy(fold, path)

    def full(*_args, **_kwargs):
        raise RuntimeError(
            "[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing "
            "file data/0: file write failed"
        )

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(WriteError) as err:
        save_checkpoint(path, {"state_dict": {}})
    free = shutil.disk_usage(tmp_path).free
    reason = "no space left on device" if free < 64 * 2**20 else "the write failed"
    assert str(err.value).startswith(f"cannot write {path}: {reason} (")
    assert str(err.value).endswith(" free)")
    assert isinstance(err.value, OSError)  # callers catching OSError still catch it
    assert str(pickle.loads(pickle.dumps(err.value))) == str(err.value)  # from fold workers
    assert load_checkpoint(path)["labels"] == ["aaa", "bbb", "ccc"]  # the old one, whole
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]

    def enospc(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", enospc)
    with pytest.raises(WriteError, match=r"^cannot write .*best\.pt: no space left on device \("):
        save_checkpoint(path, {"state_dict": {}})
    monkeypatch.undo()
    with pytest.raises((pickle.PicklingError, AttributeError)) as err:  # other errors pass
        save_checkpoint(path, {"state_dict": {}, "f": lambda: 0})  # unchanged
    assert not isinstance(err.value, WriteError)
