"""Inference latency per clip on the CPU: PyTorch eager, TorchScript and ONNX Runtime, side by side.

``tcm_tsm_resnet50`` (``--model``; random weights with BatchNorm statistics measured on random
clips, 174 classes), 1 clip x 8 frames x 224x224, fp32. The TorchScript and ONNX files are made
as ``tcm export`` makes them (traced / TorchScript-based ONNX exporter, MTDM's operator in
standard ONNX operators, dynamic batch). ONNX Runtime runs at the graph optimisation level ``tcm
predict`` uses (all) and at the *extended* level, which leaves out the convolutions' blocked
layouts. Runs alternate between the contenders after warm-up, and medians are reported, so load
on the machine affects all alike. Eager mode is timed with both the default ops backend ("auto")
and plain PyTorch.

Usage: ``python benchmarks/bench_inference.py [--repeats 7] [--threads N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import tcm
import tcm.ops
from random_models import calibrate_batch_norm
from side_by_side import time_side_by_side
from tcm.deploy.export import export_onnx, export_torchscript, load_torchscript, onnx_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tcm_tsm_resnet50")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = tcm.create_model(args.model, num_classes=174, num_segments=args.frames)
    calibrate_batch_norm(model, args.frames, args.size)
    clip = torch.randn(1, args.frames, 3, args.size, args.size)  # (N, T, 3, H, W)

    with tempfile.TemporaryDirectory() as folder:
        script_path, onnx_path = Path(folder) / "model.pt", Path(folder) / "model.onnx"
        start = time.perf_counter()
        export_torchscript(model, clip, script_path, meta={})
        script_export_s = time.perf_counter() - start
        start = time.perf_counter()
        export_onnx(model, clip, onnx_path)
        onnx_export_s = time.perf_counter() - start
        scripted = load_torchscript(script_path)
        session = onnx_session(onnx_path, threads=args.threads)
        extended = onnx_session(onnx_path, threads=args.threads, level="ORT_ENABLE_EXTENDED")
        feed = {"clip": clip.numpy()}

        def eager():
            with torch.no_grad():
                return model(clip)

        def torchscript():
            with torch.no_grad():
                return scripted(clip)

        def onnxruntime():
            return torch.from_numpy(session.run(["logits"], feed)[0])

        def onnxruntime_extended():
            return torch.from_numpy(extended.run(["logits"], feed)[0])

        contenders = {"PyTorch eager": eager}
        use_backend = getattr(tcm.ops, "use_backend", None)
        if use_backend is not None:
            contenders["PyTorch eager, torch ops"] = lambda: _with_backend(use_backend, eager)
        contenders["TorchScript"] = torchscript
        contenders["ONNX Runtime"] = onnxruntime
        contenders["ONNX Runtime, extended"] = onnxruntime_extended

        reference = eager()
        differences = {
            name: (fn() - reference).abs().max().item() for name, fn in contenders.items()
        }
        samples = time_side_by_side(contenders, args.repeats, args.warmup)

    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians["PyTorch eager"]
    print(
        f"{args.model}: 1 clip x {args.frames} x {args.size}x{args.size}, fp32, CPU, "
        f"{args.threads} threads, torch {torch.__version__}; median of {args.repeats} "
        f"alternating runs after {args.warmup} warm-up"
    )
    print(f"{'':26s} {'median ms':>10s} {'min ms':>8s} {'vs eager':>9s} {'max |diff|':>11s}")
    for name, median in medians.items():
        print(
            f"{name:26s} {1e3 * median:10.1f} {1e3 * min(samples[name]):8.1f} "
            f"{median / base:8.2f}x {differences[name]:11.2e}"
        )
    print(f"export time: TorchScript {script_export_s:.1f} s, ONNX {onnx_export_s:.1f} s")
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "frames": args.frames,
                    "size": args.size,
                    "threads": args.threads,
                    "median_s": medians,
                    "max_abs_diff": differences,
                }
            )
        )


def _with_backend(use_backend, fn):
    with use_backend("torch"):
        return fn()


if __name__ == "__main__":
    main()
