"""Hostile artefacts: a shared checkpoint never chooses what code runs.

Each case is a checkpoint in the real format (loads with ``weights_only=True``) whose stored
config tries to run code or reach outside birdsweep while ``birdsweep export`` rebuilds its
model. Each must be refused with a one-line reason naming the key, before anything is imported
from the named target, called or written.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import pytest
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
from birdsweep.export.graph import load_model
from birdsweep.train.checkpoint import save_checkpoint

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


def test_training_config_whitelist_refuses_nested_targets():
    cfg = OmegaConf.create(
        {"_target_": "birdsweep.augment.wave.Gain", "p": {"_target_": "torch.save", "obj": 1}}
    )
    with pytest.raises(UntrustedConfigError, match=r"p\._target_='torch\.save'"):
        build(cfg)
