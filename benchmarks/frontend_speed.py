"""Mel front end speed: ``nnaudio`` (conv1d STFT, the baseline) against ``torch`` (torch.stft).

Both backends are timed in the same run on the same batch (eager PyTorch, no grad), then
exported to ONNX with the legacy exporter (opset 17) and the dynamo exporter (opset 18) and
checked against eager PyTorch in ONNX Runtime::

    python benchmarks/frontend_speed.py                        # 32 x 5 s, 128 mels, n_fft 2048
    python benchmarks/frontend_speed.py --n-mels 64 --n-fft 1024 --hop 512   # sed_small
    python benchmarks/frontend_speed.py --no-onnx --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from birdsweep.data.windows import WINDOW_SECONDS  # noqa: E402
from birdsweep.features.frontend import BACKENDS, MelFrontend  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in ms after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def onnx_check(
    fe: MelFrontend, wave: torch.Tensor, dynamo: bool, repeats: int, threads: int, tmp: Path
) -> tuple[str, str]:
    """Export ``fe``; return (max rel diff vs eager on ``wave``, ORT ms) or the error."""
    import onnxruntime as ort

    path = tmp / f"{fe.backend}_{'dynamo' if dynamo else 'legacy'}.onnx"
    example = wave[:2]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if dynamo:
                torch.onnx.export(
                    fe,
                    (example,),
                    path,
                    dynamo=True,
                    opset_version=18,
                    input_names=["wave"],
                    dynamic_shapes=({0: torch.export.Dim("batch")},),
                    external_data=False,
                    verbose=False,
                )
            else:
                torch.onnx.export(
                    fe,
                    (example,),
                    path,
                    dynamo=False,
                    opset_version=17,
                    input_names=["wave"],
                    dynamic_axes={"wave": {0: "batch"}},
                )
    except Exception as err:  # report, don't stop the table
        return f"export failed: {type(err).__name__}", "-"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = wave.numpy()
    got = sess.run(None, {"wave": x})[0]
    with torch.no_grad():
        ref = fe(wave).numpy()
    rel = float(np.abs(got - ref).max() / np.abs(ref).max())
    ms = median_ms(lambda: sess.run(None, {"wave": x}), repeats)
    return f"{rel:.1e}", f"{ms:.0f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seconds", type=float, default=WINDOW_SECONDS)
    p.add_argument("--sample-rate", type=int, default=32000)
    p.add_argument("--n-fft", type=int, default=2048)
    p.add_argument("--hop", type=int, default=512)
    p.add_argument("--n-mels", type=int, default=128)
    p.add_argument("--fmin", type=float, default=50.0)
    p.add_argument("--fmax", type=float, default=14000.0)
    p.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime threads")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export checks")
    args = p.parse_args()

    from rich.console import Console
    from rich.table import Table

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    wave = torch.randn(args.batch, int(args.seconds * args.sample_rate))
    kw = dict(
        sample_rate=args.sample_rate,
        n_fft=args.n_fft,
        hop_length=args.hop,
        n_mels=args.n_mels,
        fmin=args.fmin,
        fmax=args.fmax,
        normalize="instance",  # the normalisation these timings were taken with
    )
    fes = {b: MelFrontend(backend=b, **kw).eval() for b in BACKENDS}
    with torch.no_grad():
        outs = {b: fe(wave) for b, fe in fes.items()}
        times = {b: median_ms(lambda fe=fe: fe(wave), args.repeats) for b, fe in fes.items()}
        power = {b: fe._power_mel(wave) for b, fe in fes.items()}
    base = "nnaudio"
    rel_power = (power["torch"] - power[base]).abs().max() / power[base].abs().max()
    abs_out = (outs["torch"] - outs[base]).abs().max()

    title = (
        f"{args.batch} x {args.seconds:g} s at {args.sample_rate} Hz, n_fft {args.n_fft}, "
        f"hop {args.hop}, {args.n_mels} mels, {args.threads} threads ({torch.__version__})"
    )
    table = Table(title=title)
    cols = ["backend", "eager ms", "speed-up vs nnaudio"]
    if not args.no_onnx:  # rel diff = max |ORT - eager| / max |eager|
        cols += ["legacy/17 rel diff", "ORT ms", "dynamo/18 rel diff", "ORT ms "]
    for c in cols:
        table.add_column(c, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for b, fe in fes.items():
            row = [b, f"{times[b]:.0f}", f"{times[base] / times[b]:.2f}x"]
            if not args.no_onnx:
                for dynamo in (False, True):
                    row += onnx_check(fe, wave, dynamo, args.repeats, args.threads, Path(tmp))
            table.add_row(*row)
    console = Console(width=120)
    console.print(table)
    console.print(
        f"torch vs nnaudio: mel power max rel diff {rel_power:.1e}; "
        f"normalised log-mel max abs diff {abs_out:.1e}"
    )


if __name__ == "__main__":
    main()
