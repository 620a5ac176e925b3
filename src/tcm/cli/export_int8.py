"""``tcm export --quantize int8``: the float export, then its int8 version in its place
(:func:`tcm.deploy.quantize.quantize_export`), with top-1 before and after and the speed of
both on this machine per runtime."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def check_int8_arguments(args: argparse.Namespace) -> None:
    if args.format != "onnx":
        raise ValueError("--quantize int8 needs --format onnx")
    if args.calibration is None or args.data_root is None:
        raise ValueError("--quantize int8 needs --calibration LIST and --data-root DIR")
    for option, path in (("--calibration", args.calibration), ("--evaluation", args.evaluation)):
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"{option}: {path} is not a file")
    if not args.data_root.is_dir():
        raise FileNotFoundError(f"--data-root: {args.data_root} is not a folder")


def _speeds(
    paths: tuple[Path, Path], runtime: str, frames: int, size: int, repeats: int = 7
) -> tuple[float, float]:
    """Median milliseconds of one clip through each model, the two alternating (so that load
    on the machine falls on both alike)."""
    import numpy as np

    from tcm.runtime import ExportedModel

    models = [ExportedModel(path, runtime) for path in paths]
    clip = np.random.default_rng(0).standard_normal((1, frames, 3, size, size), np.float32)
    times: list[list[float]] = [[], []]
    for model in models:
        model(clip)
    for _ in range(repeats):
        for model, samples in zip(models, times):
            start = time.perf_counter()
            model(clip)
            samples.append(time.perf_counter() - start)
    slow, fast = (1e3 * sorted(t)[len(t) // 2] for t in times)
    return slow, fast


def quantize_written(args: argparse.Namespace) -> int:
    """Turn the float file just written at ``--out`` into the int8 one; keep the float one as
    ``OUT_fp32.onnx``. Prints top-1 and the speed of both per installed runtime."""
    from tcm.deploy.quantize import quantize_export
    from tcm.runtime import available_runtimes, read_export_metadata

    out = args.out
    fp32 = out.with_name(f"{out.stem}_fp32{out.suffix}")
    for path, target in (
        (out, fp32),
        (out.with_name(out.name + ".json"), fp32.with_name(fp32.name + ".json")),
    ):
        os.replace(path, target)
    report = quantize_export(
        fp32, out, args.calibration, args.data_root, force=args.force, evaluation=args.evaluation
    )
    print(
        f"wrote {out} (int8; MTDM in float32, {report.float_nodes} nodes) and kept the float "
        f"model as {fp32}"
    )
    print(
        f"top-1 on {args.evaluation or args.calibration} ({report.clips} clips): "
        f"float {report.top1_float:.1f} %, "
        f"int8 {report.top1_int8:.1f} %"
    )
    meta = read_export_metadata(out)
    for runtime in available_runtimes():
        slow, fast = _speeds((fp32, out), runtime, meta["frames"], meta["input_size"])
        print(f"{runtime}: one clip {slow:.1f} ms float, {fast:.1f} ms int8 ({slow / fast:.2f}x)")
    return 0
