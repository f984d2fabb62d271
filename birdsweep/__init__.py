"""birdsweep: train, sweep and ship bioacoustic classifiers."""

import os

# Nothing is fetched at run time: MLflow 3 sends usage telemetry to an outside host unless
# this is set, and reads it once, when mlflow is first imported. Every birdsweep entry point
# (run.py, sweeps, the `birdsweep` command) imports this package before mlflow. A value you
# set yourself (MLFLOW_DISABLE_TELEMETRY=false to send telemetry) is kept.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

__version__ = "0.1.0"
