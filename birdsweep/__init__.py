"""birdsweep: train, sweep and ship bioacoustic classifiers."""

import os

# Nothing is fetched at run time: MLflow 3 sends usage telemetry to an outside host unless
# this is set, and reads it once, when mlflow is first imported. Every birdsweep entry point
# (run.py, sweeps, the `birdsweep` command) imports this package before mlflow. A value you
# set yourself (MLFLOW_DISABLE_TELEMETRY=false to send telemetry) is kept.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import importlib  # noqa: E402
from typing import Any  # noqa: E402

__version__ = "0.1.0"

# The public API, imported lazily: `import birdsweep` stays light (no torch, no mlflow) and
# `birdsweep.SEDModel` imports its module on first use. Reference: docs/api.md.
_EXPORTS = {
    "SEDModel": "birdsweep.model.sed",
    "MelFrontend": "birdsweep.features.frontend",
    "run_kfold": "birdsweep.train.kfold",
    "KFoldSummary": "birdsweep.train.kfold",
    "export_ensemble": "birdsweep.export.ensemble",
    "ExportResult": "birdsweep.export.ensemble",
    "Ensemble": "birdsweep.infer.ensemble",
    "macro_auc": "birdsweep.scoring.metric",
    "score_submission": "birdsweep.scoring.metric",
    "build": "birdsweep.config",
    "generate_demo_dataset": "birdsweep.data.demo",
}

__all__ = [
    "__version__",
    "SEDModel",
    "MelFrontend",
    "run_kfold",
    "KFoldSummary",
    "export_ensemble",
    "ExportResult",
    "Ensemble",
    "macro_auc",
    "score_submission",
    "build",
    "generate_demo_dataset",
]  # = _EXPORTS (tests/test_docs.py checks)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'birdsweep' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
