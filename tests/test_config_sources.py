"""One home for each default: conf and the code that reads it agree.

- ``MelFrontend``'s code defaults are ``conf/model/frontend/default.yaml``;
- every model preset composes with its front end (``conf/model/frontend``) and builds a model
  whose front end has the preset's values;
- every loss option takes the shared keys of ``conf/loss/base/sed.yaml``;
- the ``birdsweep`` command's choices and defaults are those of the code that defines them;
- ``default_tracking_uri()`` is ``conf/logger/mlflow.yaml``'s URI;
- training and export refuse a front end built for another sample rate than ``data.sample_rate``.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from birdsweep.cli import COMMANDS, build_parser, main
from birdsweep.config import build
from birdsweep.data.demo import NOISE_PRESETS, generate_demo_dataset
from birdsweep.data.windows import WINDOW_SECONDS
from birdsweep.evaluate.report import write_report
from birdsweep.export.ensemble import export_ensemble
from birdsweep.features.frontend import EXPORT_STFT, MelFrontend, mel_filterbank
from birdsweep.infer.ensemble import Ensemble, label_files
from birdsweep.infer.output import OUTPUT_FORMATS
from birdsweep.infer.pseudo import ACTIVATIONS, pseudo_label
from birdsweep.scoring.combine import COMBINE_METHODS
from birdsweep.track.store import default_tracking_uri
from birdsweep.train.checkpoint import save_checkpoint
from birdsweep.train.kfold import run_kfold
from birdsweep.train.losses import SEDLoss
from birdsweep.train.validate import ConfigError, validate_config
from tests.conftest import CONF, TINY_MODEL, compose_config

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.stem for p in (Path(CONF) / "model").glob("*.yaml"))
LOSSES = sorted(p.stem for p in (Path(CONF) / "loss").glob("*.yaml"))


def _resolved(node) -> dict:
    return OmegaConf.to_container(node, resolve=True)


def _signature_defaults(fn) -> dict:
    return {
        k: p.default
        for k, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


# --------------------------------------------------------------------------------- front end


def test_melfrontend_code_defaults_are_the_default_frontend_file():
    cfg = compose_config(["model/frontend=default"])
    conf = _resolved(cfg.model.frontend)
    assert conf.pop("_target_") == f"{MelFrontend.__module__}.{MelFrontend.__qualname__}"
    code = _signature_defaults(MelFrontend)
    assert set(conf) <= set(code)
    assert {k: code[k] for k in conf} == conf
    # the default model uses it, as it is
    assert _resolved(compose_config().model.frontend) == _resolved(cfg.model.frontend)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_builds_a_model_with_its_frontend_values(preset):
    cfg = compose_config([f"model={preset}", "model.pretrained=false"])
    conf = _resolved(cfg.model.frontend)
    assert conf["sample_rate"] == cfg.data.sample_rate
    fe = build(cfg.model, num_classes=3).frontend
    assert isinstance(fe, MelFrontend)
    not_kept = {"_target_", "fmin", "fmax", "pcen_time_constant"}  # not attributes
    assert {k: getattr(fe, k) for k in conf if k not in not_kept} == {
        k: v for k, v in conf.items() if k not in not_kept
    }
    bands = mel_filterbank(
        conf["sample_rate"], conf["n_fft"], conf["n_mels"], conf["fmin"], conf["fmax"], conf["htk"]
    )
    assert torch.equal(fe.mel_fb, bands)  # fmin / fmax


def test_a_frontend_value_and_the_frontend_option_can_be_overridden():
    tiny = compose_config(TINY_MODEL)
    assert tiny.model.frontend.n_mels == 32 and tiny.model.frontend.n_fft == 1024
    swapped = compose_config(["model=sed_small", "model/frontend=aisfx"])
    assert _resolved(swapped.model.frontend) == _resolved(
        compose_config(["model=sed_aisfx"]).model.frontend
    )


# ----------------------------------------------------------------------------------- losses


@pytest.mark.parametrize("option", LOSSES)
def test_loss_option_composes_on_the_shared_base(option):
    base = OmegaConf.load(Path(CONF) / "loss" / "base" / "sed.yaml")
    loss_cfg = compose_config([f"loss={option}"]).loss
    assert set(base) <= set(loss_cfg)
    assert isinstance(build(loss_cfg), SEDLoss)
    assert set(_resolved(loss_cfg)) - {"_target_"} <= set(_signature_defaults(SEDLoss))


# ------------------------------------------------------------------------------------- CLI


def _options(command: str) -> dict[str, argparse.Action]:
    parser = build_parser([command])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices[command]._actions}


def test_cli_choices_are_the_code_constants():
    assert _options("export")["combine"].choices is COMBINE_METHODS
    assert _options("export")["stft"].choices is EXPORT_STFT
    assert _options("infer")["combine"].choices is COMBINE_METHODS
    assert _options("infer")["format"].choices is OUTPUT_FORMATS
    assert _options("pseudo-label")["combine"].choices is COMBINE_METHODS
    assert _options("pseudo-label")["activation"].choices is ACTIVATIONS
    assert list(_options("demo-data")["noise"].choices) == list(NOISE_PRESETS)


@pytest.mark.parametrize(
    ("command", "fn", "names"),
    [
        ("demo-data", generate_demo_dataset, {"seed": "seed", "classes": "n_classes",
            "train_soundscapes": "n_train_soundscapes", "noise": "noise",
            "test_soundscapes": "n_test_soundscapes"}),
        ("export", export_ensemble, {k: k for k in ("combine", "opset", "stft", "tolerance")}),
        ("infer", label_files, {"format": "output_format", "combine": "combine",
            "threshold": "threshold", "threads": "threads", "file_max_power": "file_max_power"}),
        ("infer", Ensemble, {k: k for k in ("batch_size", "fail_windows", "shifts")}),
        ("pseudo-label", pseudo_label,
            {k: k for k in ("floor", "threshold", "combine", "activation", "threads")}),
        ("report", write_report, {k: k for k in ("classes_per_page", "top_pairs")}),
    ],
)  # fmt: skip
def test_cli_defaults_are_the_library_defaults(command, fn, names):
    options, code = _options(command), _signature_defaults(fn)
    assert {flag: options[flag].default for flag in names} == {
        flag: code[param] for flag, param in names.items()
    }


def test_cli_help_texts_derive_from_the_defaults():
    help_text = _options("infer")["fail_windows"].help
    assert f"= {_signature_defaults(Ensemble)['fail_windows'] * WINDOW_SECONDS:g} s" in help_text


def test_cli_top_level_help_stays_light():
    """``birdsweep --help`` adds no command's options, so it imports no numerical library."""
    cmd = [sys.executable, "-X", "importtime", "-m", "birdsweep.cli", "--help"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and all(name in run.stdout for name in COMMANDS)
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines()}
    assert "birdsweep.atomic" in imported  # the listing is read (cli runs as __main__)
    assert not imported & {"torch", "numpy", "pandas", "onnxruntime", "mlflow"}


def test_default_tracking_uri_is_the_logger_conf(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("BIRDSWEEP_ROOT", str(tmp_path))
    assert default_tracking_uri() == compose_config().logger.tracking_uri


# ---------------------------------------------------------------------------------- export


def test_export_refuses_a_frontend_built_for_another_sample_rate(tmp_path, caplog):
    # fmax within 16 kHz's Nyquist: the model builds, for the wrong rate
    rates = ["model.frontend.sample_rate=16000", "model.frontend.fmax=8000"]
    cfg = compose_config([*TINY_MODEL, *rates])
    model = build(cfg.model, num_classes=2)
    stored = {"model": _resolved(cfg.model), "data": _resolved(cfg.data)}
    assert stored["data"]["sample_rate"] == 32000
    ck = tmp_path / "fold0" / "best.pt"
    save_checkpoint(
        ck,
        {
            "state_dict": model.state_dict(),
            "labels": ["aaa", "bbb"],
            "config": OmegaConf.to_yaml(OmegaConf.create(stored)),
            "fold": 0,
            "epoch": 0,
            "val_macro_auc": 0.5,
        },
    )
    out = tmp_path / "ensemble"
    with caplog.at_level(logging.ERROR):
        rc = main(["export", "--checkpoints", str(ck), "--out", str(out)])
    assert rc == 2 and not out.exists()
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "\n" not in line and str(ck) in line
    assert "model.frontend.sample_rate=16000" in line and "data.sample_rate=32000" in line


def test_training_refuses_a_frontend_built_for_another_sample_rate(tmp_path):
    cfg = compose_config(
        [*TINY_MODEL, "model.frontend.sample_rate=16000", "model.frontend.fmax=8000"],
        root=tmp_path,
    )
    with pytest.raises(ConfigError, match=r"model\.frontend\.sample_rate=16000.*32000"):
        run_kfold(cfg)
    assert not (tmp_path / "outputs" / "checkpoints").exists()  # refused before any work
    validate_config(compose_config(TINY_MODEL, root=tmp_path))  # ${data.sample_rate} passes
