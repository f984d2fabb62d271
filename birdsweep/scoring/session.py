"""Runnable sessions of exported graphs on the CPU: onnxruntime or OpenVINO, one interface.

Both runtimes read the same ``.onnx`` file ``birdsweep export`` writes; nothing on this path
imports PyTorch. ``open_session(path, "openvino")`` needs the ``openvino`` package
(``pip install "birdsweep[openvino]"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

INPUT_NAME = "wave"  # [batch, window_samples] float32
OUTPUT_NAME = "probs"  # [batch, models_in_graph, classes] float32
RUNTIMES = ("onnxruntime", "openvino")  # choices of `birdsweep infer --runtime`


class GraphSession(Protocol):
    """One loaded graph: ``wave`` ``[B, samples]`` in, ``probs`` ``[B, models, classes]`` out."""

    runtime: str
    output_shape: list[int | None]  # None for a dynamic dimension
    metadata: dict[str, str]  # the ONNX file's metadata_props (e.g. the stamped labels)

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        """Probabilities of a batch of windows."""
        ...


class OrtSession:
    """An onnxruntime CPU session with all graph optimisations.

    Args:
        path: ``.onnx`` file.
        threads: intra-op threads (None = onnxruntime's default, one per core).
        spinning: let idle worker threads spin-wait between operators.
    """

    runtime = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, spinning: bool = False):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        if threads:
            so.intra_op_num_threads = int(threads)
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        shape = self.session.get_outputs()[0].shape
        self.output_shape = [d if isinstance(d, int) else None for d in shape]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: wave})[0]


class OpenVinoSession:
    """The same graph compiled by OpenVINO for its CPU plugin (fp32 inference precision, so
    scores match onnxruntime's to float noise; OpenVINO would otherwise pick bf16 on CPUs
    that have it).

    Args:
        path: ``.onnx`` file (read by OpenVINO's ONNX front end; no IR conversion step).
        threads: inference threads (None = OpenVINO's default, one per core).
        spinning: unused (onnxruntime's option; accepted so both runtimes take the same
            arguments).
    """

    runtime = "openvino"

    def __init__(self, path: str | Path, threads: int | None = None, spinning: bool = False):
        try:
            import openvino as ov
        except ImportError as exc:
            raise ImportError(
                '--runtime openvino needs the openvino package: pip install "birdsweep[openvino]"'
            ) from exc
        core = ov.Core()
        model = core.read_model(str(path))
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self._output = self.compiled.output(OUTPUT_NAME)
        shape = model.output(OUTPUT_NAME).get_partial_shape()
        self.output_shape = [d.get_length() if d.is_static else None for d in shape]
        rt = model.get_rt_info()
        framework = rt["framework"] if "framework" in rt else {}  # noqa: SIM401 (RTMap: no .get)
        self.metadata = {k: v.astype(str) for k, v in framework.items()}

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        return np.array(self.request.infer({INPUT_NAME: wave})[self._output], copy=True)


def load_error(exc: BaseException) -> str:
    """One line of why a runtime could not load a graph (the runtimes' own errors are long:
    OpenVINO's names the operator it could not convert on a line of its own)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    named = [ln[3:] for ln in lines if ln.startswith("-- ")]
    return (named or lines or [type(exc).__name__])[0]


def installed_runtimes() -> list[str]:
    """The runtimes of :data:`RUNTIMES` this environment can load (onnxruntime always)."""
    import importlib.util

    return [r for r in RUNTIMES if importlib.util.find_spec(r) is not None]


def open_session(
    path: str | Path,
    runtime: str = "onnxruntime",
    threads: int | None = None,
    spinning: bool = False,
) -> GraphSession:
    """Load an exported graph into ``runtime`` (one of :data:`RUNTIMES`).

    Raises:
        ValueError: an unknown runtime.
    """
    if runtime == "onnxruntime":
        return OrtSession(path, threads, spinning)
    if runtime == "openvino":
        return OpenVinoSession(path, threads, spinning)
    raise ValueError(f"runtime {runtime!r} is not one of {RUNTIMES}")
