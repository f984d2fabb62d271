"""onnxruntime CPU sessions of exported graphs (no PyTorch import on the inference path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

INPUT_NAME = "wave"  # [batch, window_samples] float32
OUTPUT_NAME = "probs"  # [batch, models_in_graph, classes] float32


def onnx_session(path: str | Path, threads: int | None = None, spinning: bool = False) -> Any:
    """An onnxruntime CPU session with all graph optimisations.

    Args:
        path: ``.onnx`` file.
        threads: intra-op threads (None = onnxruntime's default, one per core).
        spinning: let idle worker threads spin-wait between operators.

    Returns:
        ``onnxruntime.InferenceSession``.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    if threads:
        so.intra_op_num_threads = int(threads)
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
