"""The default model's network on the CPU through other runtimes: torch fp32 and bf16 (what
`cloudkit predict` runs), ONNX Runtime fp32 and int8 (static quantisation, QDQ, per channel).

A speed probe for issue 12's question whether a CPU runtime or int8 makes the network cheap
enough: every run is a batch of ``--batch`` windows of 384 px with all 13 bands, after a
warm-up, best of ``--repeat``; the int8 model is calibrated on random reflectance, so its
speed is measured, not its accuracy. Beside each time: that runtime's own peak RSS, loading
its model and running it (this process's VmHWM reset before each: peak_memory.py; the ONNX
export and int8 calibration come first and count only by what the process still holds of
them). Needs ``pip install onnxruntime onnx`` (not a cloudkit dependency).

    python benches/bench_runtimes.py [--batch 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_memory import measure_here  # noqa: E402

WINDOW = 384


def best_of(run, repeat: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def torch_run(x: torch.Tensor, precision: str, repeat: int) -> float:
    from cloudkit.models.zoo import load_predictor

    model = load_predictor("default", device="cpu", precision=precision)._model
    xi = x.to(memory_format=torch.channels_last)
    xi = xi.bfloat16() if precision == "bf16" else xi
    with torch.inference_mode():
        return best_of(lambda: model(xi), repeat)


def torch_runs(x: torch.Tensor, repeat: int) -> dict[str, tuple[float, float]]:
    """Seconds and own peak RSS (MB) of each precision."""
    out = {}
    for precision in ("fp32", "bf16"):
        with measure_here() as run:
            seconds = torch_run(x, precision, repeat)
        out[f"torch {precision}"] = (seconds, run.peak_mb)
    return out


def onnx_run(path: Path, threads: int, feed: dict, repeat: int) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return best_of(lambda: session.run(None, feed), repeat)


def onnx_runs(
    x: torch.Tensor, repeat: int, threads: int, folder: Path
) -> dict[str, tuple[float, float]]:
    """Seconds and own peak RSS (MB) of each ONNX Runtime model, exported and quantised first."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from cloudkit.models.zoo import load_predictor

    model = load_predictor("default", device="cpu", precision="fp32")._model.eval()
    fp32, pre, int8 = (folder / f"{n}.onnx" for n in ("fp32", "pre", "int8"))
    torch.onnx.export(
        model, x[:1], str(fp32), input_names=["x"], output_names=["y"],
        dynamic_axes={"x": {0: "n"}}, opset_version=17, dynamo=False,
    )  # fmt: skip
    del model  # not the sessions' memory
    rng = np.random.default_rng(0)

    class RandomReflectance(CalibrationDataReader):
        def __init__(self) -> None:
            shape = (1, x.shape[1], WINDOW, WINDOW)
            self._batches = iter(
                [{"x": (rng.random(shape) * 0.3).astype(np.float32)} for _ in range(4)]
            )

        def get_next(self):
            return next(self._batches, None)

    quant_pre_process(str(fp32), str(pre))
    quantize_static(
        str(pre), str(int8), RandomReflectance(), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
    )  # fmt: skip
    out = {}
    feed = {"x": x.numpy()}
    for name, path in (("onnxruntime fp32", fp32), ("onnxruntime int8", int8)):
        with measure_here() as run:
            seconds = onnx_run(path, threads, feed, repeat)
        out[name] = (seconds, run.peak_mb)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 13, WINDOW, WINDOW) * 0.3
    results = torch_runs(x, args.repeat)
    with tempfile.TemporaryDirectory(prefix="bench-runtimes-") as tmp:
        results |= onnx_runs(x, args.repeat, args.threads, Path(tmp))
    base = results["torch bf16"][0]
    print(f"default model, {args.batch} windows of {WINDOW} px, {args.threads} threads")
    for name, (seconds, peak_mb) in results.items():
        print(
            f"  {name:18s} {seconds:6.3f} s   {base / seconds:.2f}x torch bf16   "
            f"peak RSS {peak_mb:6.0f} MB"
        )


if __name__ == "__main__":
    main()
