"""Hostile artefacts: a shared checkpoint never chooses what code runs; an ensemble is
swapped in whole and checked before it scores anything.

Each case is a checkpoint in the real format (loads with ``weights_only=True``) whose stored
config tries to run code or reach outside birdsweep while ``birdsweep export`` rebuilds its
model. Each must be refused with a one-line reason naming the key, before anything is imported
from the named target, called or written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from birdsweep.cli import main
from birdsweep.config import (
    ARTEFACT_TARGETS,
    TRUSTED_TARGETS,
    UntrustedConfigError,
    build,
    build_artefact_model,
)
from birdsweep.export.ensemble import ParityError, export_ensemble, recover_interrupted_export
from birdsweep.export.select import select_checkpoints
from birdsweep.infer.ensemble import Ensemble
from birdsweep.train.checkpoint import load_model, save_checkpoint

FRONTEND = {"_target_": "birdsweep.features.frontend.MelFrontend", "n_mels": 32}
MODEL = {
    "_target_": "birdsweep.model.sed.SEDModel",
    "backbone": "mobilenetv3_small_050",
    "pretrained": False,
    "frontend": FRONTEND,
}


def _payload(marker: Path) -> dict:
    """A node that, if ever called, writes ``marker`` (torch's own code-from-string helper)."""
    src = f"open({str(marker)!r}, 'w').write('pwned')\ndef forward(self):\n    pass\n"
    return {
        "_target_": "torch.fx.graph_module._forward_from_src",
        "src": src,
        "globals": {"__name__": "x"},
        "_convert_": "all",
    }


def test_the_payload_would_run_if_called(tmp_path):
    """The guard above is what stops it: called through Hydra with no checks, it writes."""
    from hydra.utils import instantiate

    marker = tmp_path / "pwned"
    with contextlib.suppress(Exception):  # Hydra objects to the result, after the code ran
        instantiate(OmegaConf.create(_payload(marker)), _execution_whitelist_=["torch.*"])
    assert marker.read_text() == "pwned"


def _checkpoint(path: Path, model_cfg: dict) -> Path:
    """A fold checkpoint in birdsweep's real format with ``model_cfg`` as its stored model."""
    cfg = {"model": model_cfg, "data": {"sample_rate": 32000, "window_seconds": 5.0}}
    save_checkpoint(
        path,
        {
            "state_dict": {"w": torch.zeros(1)},
            "labels": ["aaa", "bbb"],
            "config": OmegaConf.to_yaml(OmegaConf.create(cfg)),
            "fold": 0,
            "epoch": 0,
            "val_macro_auc": 0.9,
        },
    )
    return path


def _hostile_models(marker: Path) -> dict[str, dict]:
    evil = _payload(marker)
    return {
        "nested target in the front end": {**MODEL, "frontend": evil},
        "torch callable as the model": {**evil},
        "torch.load as the model": {"_target_": "torch.load", "f": str(marker)},
        "torch.hub.load as the front end": {
            **MODEL,
            "frontend": {"_target_": "torch.hub.load", "repo_or_dir": "x/y", "model": "z"},
        },
        "path trick through an imported module": {
            **MODEL,
            "frontend": {"_target_": "birdsweep.model.sed.torch.save", "obj": 1, "f": str(marker)},
        },
        "a front end in the model's place": {**FRONTEND},
        "target hidden in head_kwargs": {**MODEL, "head_kwargs": {"x": evil}},
        "target hidden in a list": {**MODEL, "head_kwargs": {"x": [evil]}},
        "hydra _args_": {**MODEL, "_args_": [str(marker)]},
        "hydra _partial_": {**MODEL, "_partial_": True},
        "interpolation (resolver)": {**MODEL, "backbone": "${oc.env:HOME}"},
        "hub backbone": {**MODEL, "backbone": "hf-hub:someone/evil"},
        "local-dir backbone": {**MODEL, "backbone": f"local-dir:{marker.parent}"},
        "no target at all": {"backbone": "mobilenetv3_small_050"},
    }


@pytest.mark.parametrize("case", list(_hostile_models(Path("x"))))
def test_hostile_checkpoint_is_refused_without_running_anything(case, tmp_path):
    marker = tmp_path / "pwned"
    ck = _checkpoint(tmp_path / "evil" / "best.pt", _hostile_models(marker)[case])
    with pytest.raises(UntrustedConfigError) as err:
        load_model(ck)
    msg = str(err.value)
    assert "\n" not in msg and str(ck) in msg
    assert not marker.exists()


def test_cli_export_refuses_a_hostile_checkpoint_and_writes_nothing(tmp_path, caplog):
    marker = tmp_path / "pwned"
    ck = _checkpoint(tmp_path / "evil" / "best.pt", {**MODEL, "frontend": _payload(marker)})
    out = tmp_path / "ensemble"
    with caplog.at_level(logging.ERROR):
        rc = main(["export", "--checkpoints", str(ck), "--out", str(out)])
    assert rc == 2
    assert "model.frontend._convert_ is not allowed in an artefact" in caplog.text
    assert not marker.exists() and not out.exists()


def test_registered_model_still_rebuilds_from_an_artefact(tmp_path):
    model = build_artefact_model(
        OmegaConf.create({**MODEL, "pretrained": True, "checkpoint_path": str(tmp_path / "no")}),
        "test",
        num_classes=2,
    )
    assert model.head.cla.out_channels == 2  # pretrained / checkpoint_path were switched off
    assert type(model).__module__ + "." + type(model).__qualname__ in ARTEFACT_TARGETS["model"]


@pytest.mark.parametrize(
    "target",
    [
        "torch.save",
        "torch.fx.graph_module._forward_from_src",
        "torch.hub.download_url_to_file",
        "birdsweep.atomic.atomic_write_bytes",
        "birdsweep.augment.wave.torch.save",  # passes hydra's string match, not ours
        "timm.create_model",
        "os.system",
    ],
)
def test_training_config_whitelist_is_narrow(target, tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(UntrustedConfigError, match=target.replace(".", r"\.")):
        build(OmegaConf.create({"_target_": target, "_partial_": True}))
    assert not marker.exists()
    assert "torch.*" not in TRUSTED_TARGETS and "birdsweep.*" not in TRUSTED_TARGETS


def test_a_moved_target_is_refused_naming_its_new_place():
    cfg = OmegaConf.create({"_target_": "birdsweep.infer.context.FileMaxContext", "power": 1.0})
    new = r"birdsweep\.scoring\.context\.FileMaxContext"
    with pytest.raises(UntrustedConfigError, match=f"moved to '{new}'"):
        build(cfg)


def test_training_config_whitelist_refuses_nested_targets():
    cfg = OmegaConf.create(
        {"_target_": "birdsweep.augment.wave.Gain", "p": {"_target_": "torch.save", "obj": 1}}
    )
    with pytest.raises(UntrustedConfigError, match=r"p\._target_='torch\.save'"):
        build(cfg)


# ------------------------------------------------ ensembles: swapped in whole, checked on load


def _fold(path: Path, labels: list[str], seed: int) -> Path:
    torch.manual_seed(seed)
    model = build_artefact_model(OmegaConf.create(MODEL), "test", num_classes=len(labels))
    cfg = {"model": MODEL, "data": {"sample_rate": 32000, "window_seconds": 5.0}}
    save_checkpoint(
        path,
        {
            "state_dict": model.state_dict(),
            "labels": labels,
            "config": OmegaConf.to_yaml(OmegaConf.create(cfg)),
            "fold": seed,
            "epoch": 0,
            "val_macro_auc": 0.5 + seed / 10,
        },
    )
    return path


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory) -> Path:
    """A 2-model ensemble exported from random-weight folds (legacy exporter: fast)."""
    root = tmp_path_factory.mktemp("ens")
    labels = ["aaa", "bbb", "ccc"]
    folds = [_fold(root / "folds" / f"fold{k}" / "best.pt", labels, k) for k in range(2)]
    export_ensemble(select_checkpoints(folds), root / "ensemble", dynamo=False)
    return root / "ensemble"


def _copy(ensemble: Path, tmp_path: Path) -> Path:
    out = tmp_path / "ensemble"
    shutil.copytree(ensemble, out)
    return out


def _edit_manifest(folder: Path, edit) -> None:
    man = json.loads((folder / "manifest.json").read_text())
    edit(man)
    (folder / "manifest.json").write_text(json.dumps(man))


EDITS = {
    "labels swapped": (lambda m: m["labels"].reverse(), "another label order"),
    "a label dropped": (lambda m: m["labels"].pop(), "num_classes=3 but 2 labels"),
    "label count and labels cut": (
        lambda m: (m["labels"].pop(), m.update(num_classes=2)),
        "does not fit the manifest's 2 model\\(s\\) x 2 labels",
    ),
    "duplicate labels": (lambda m: m["labels"].__setitem__(1, "aaa"), "duplicates"),
    "graph file outside the folder": (
        lambda m: m["graphs"][0].update(file="../ensemble.onnx"),
        "plain file name",
    ),
    "a model listed twice": (lambda m: m["graphs"][0].update(models=[0, 0]), "once each"),
    "checksum edited": (lambda m: m["graphs"][0].update(sha256="0" * 64), "changed since export"),
}


@pytest.mark.parametrize("case", list(EDITS))
def test_edited_manifest_is_refused_by_infer(case, ensemble, tmp_path, caplog):
    folder = _copy(ensemble, tmp_path)
    edit, reason = EDITS[case]
    _edit_manifest(folder, edit)
    with pytest.raises(ValueError, match=reason):
        Ensemble.load(folder, threads=1)
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "a.wav", np.zeros(32000 * 5, np.float32), 32000)
    out = tmp_path / "sub.csv"
    with caplog.at_level(logging.ERROR):
        rc = main(["infer", "--model", str(folder), "--audio", str(audio), "--out", str(out)])
    assert rc == 2 and not out.exists()
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1


def test_truncated_graph_is_refused_with_one_line(ensemble, tmp_path):
    folder = _copy(ensemble, tmp_path)
    data = (folder / "ensemble.onnx").read_bytes()
    (folder / "ensemble.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="changed since export") as err:
        Ensemble.load(folder, threads=1)
    assert "\n" not in str(err.value)
    _edit_manifest(folder, lambda m: [g.pop("sha256") for g in m["graphs"]])  # no checksum
    with pytest.raises(ValueError, match="not a loadable ONNX model") as err:
        Ensemble.load(folder, threads=1)
    assert "\n" not in str(err.value)


def test_failed_overwrite_leaves_the_old_ensemble_whole(ensemble, tmp_path):
    folder = _copy(ensemble, tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    one = _fold(tmp_path / "one" / "fold0" / "best.pt", ["aaa", "bbb", "ccc"], 5)
    with pytest.raises(ParityError):  # a parity failure (tolerance below any difference)
        export_ensemble(
            select_checkpoints([one]), folder, dynamo=False, overwrite=True, tolerance=-1.0
        )
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ensemble", "one"]  # no leftovers
    Ensemble.load(folder, threads=1)  # still the consistent 2-model ensemble
    res = export_ensemble(select_checkpoints([one]), folder, dynamo=False, overwrite=True)
    assert (
        len(Ensemble.load(folder, threads=1).manifest["models"]) == 1 == len(res.manifest["models"])
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ensemble", "one"]


def test_leftovers_of_a_killed_export_are_cleaned_or_restored(ensemble, tmp_path):
    dead = 2**22 + 12345  # above pid_max on Linux: no such process
    staging = tmp_path / f".ensemble.export-{dead}-abcd"
    staging.mkdir()
    (staging / "ensemble.onnx").write_bytes(b"")  # a 0-byte graph of a killed first export
    aside = tmp_path / f".ensemble.replaced-{dead}"
    shutil.copytree(ensemble, aside)  # killed between the two renames of the swap
    recover_interrupted_export(tmp_path / "ensemble")
    assert not staging.exists() and not aside.exists()
    Ensemble.load(tmp_path / "ensemble", threads=1)  # the old ensemble is back


def test_export_refuses_a_folder_of_other_files(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    one = _fold(tmp_path / "one" / "fold0" / "best.pt", ["aaa", "bbb"], 0)
    with pytest.raises(ValueError, match="not an ensemble folder"):
        export_ensemble(select_checkpoints([one]), mine, dynamo=False, overwrite=True)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
