"""``bench_long_video.py --end-to-end``: ``tcm predict VIDEO --window W --stride S`` timed as a
user runs it (a fresh process: start-up, model loading, decoding and the model), per runtime,
and where the time goes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from random_models import calibrate_batch_norm
from side_by_side import medians, time_side_by_side
from tcm.checkpoint import atomic_save
from tcm.deploy import LongVideoPredictor, Predictor
from tcm.deploy.export import export_checkpoint
from tcm.runtime import available_runtimes


def int8_export(onnx_path: Path, folder: Path) -> Path:
    """The int8 version of ``onnx_path`` (``tcm export --quantize int8``), calibrated on clips
    of ``tcm synth`` at 256 px (kept even though a random model's top-1 drops: ``force``)."""
    from tcm.deploy.quantize import quantize_export

    clips = folder / "calibration"
    synth = [str(Path(sys.executable).with_name("tcm")), "synth", "--out", str(clips)]
    synth += ["--clips-per-class", "3", "--size", "256", "--frames", "16", "--fps", "8"]
    synth += ["--val-fraction", "0", "--test-fraction", "0", "--no-progress"]
    subprocess.run(synth, check=True, stdout=subprocess.DEVNULL)
    out = folder / "model_int8.onnx"
    report = quantize_export(onnx_path, out, clips / "train.txt", clips, force=True)
    print(f"int8 export: {report.quantized_nodes} nodes quantised, {report.float_nodes} in float")
    return out


def run_command(argv: list[str], out: Path) -> float:
    """Seconds of wall time of ``argv`` (its stdout to ``out``); raises when it fails."""
    start = time.perf_counter()
    with open(out, "w") as handle:
        subprocess.run(argv, stdout=handle, stderr=subprocess.PIPE, check=True, text=True)
    return time.perf_counter() - start


def window_probabilities(path: Path) -> np.ndarray:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return np.array([r["probabilities"] for r in rows if r.get("type") == "window"])


def end_to_end(model, checkpoint: dict, video: Path, folder: Path, args) -> None:
    calibrate_batch_norm(model, args.frames, args.input_size)
    checkpoint["state_dict"] = model.state_dict()
    checkpoint_path = atomic_save(checkpoint, folder / "model.pt")
    onnx_path = folder / "model.onnx"
    export = export_checkpoint(checkpoint_path, onnx_path, "onnx")
    print(
        f"export: largest |ONNX - PyTorch| {export.max_abs_diff:.2g} "
        f"(largest |logit| {export.max_abs_logit:.2g})"
    )
    runtimes = {"PyTorch eager": (checkpoint_path, "torch")}
    for runtime in available_runtimes():
        runtimes[runtime] = (onnx_path, runtime)
    if args.int8:
        int8_path = int8_export(onnx_path, folder)
        for runtime in available_runtimes():
            runtimes[f"{runtime} int8"] = (int8_path, runtime)
    tcm = str(Path(sys.executable).with_name("tcm"))
    common = ["--window", args.window, "--stride", args.stride, "--batch-size"]
    common += [str(args.batch_size), "--json", "--no-progress"]
    duration = None
    results = {}
    for name, (model_file, runtime) in runtimes.items():
        argv = [tcm, "predict", str(video), "--checkpoint", str(model_file), *common]
        argv += ["--runtime", runtime]
        if runtime != "torch":
            argv += ["--threads", str(args.threads)]
        out = folder / f"{runtime}.jsonl"
        seconds = run_command(argv, out)
        probabilities = window_probabilities(out)
        results[name] = {"seconds": seconds, "windows": len(probabilities), "p": probabilities}
        if duration is None:
            with LongVideoPredictor(Predictor(checkpoint_path), args.window, args.stride).open(
                video
            ) as run:
                duration = run.duration
        print(f"  {name}: {seconds:.1f} s, {duration / seconds:.1f} s of video per second")

    # Where the time goes: decoding and preparing alone, the model alone.
    predictor = Predictor(checkpoint_path)
    classes = len(predictor.classes)
    nothing = LongVideoPredictor(
        predictor,
        args.window,
        args.stride,
        batch_size=args.batch_size,
        classify=lambda clips: torch.zeros(len(clips), classes),
        overlap=False,
    )
    start = time.perf_counter()
    windows = len(nothing.run(video).windows)
    decode_seconds = time.perf_counter() - start
    engines = {"PyTorch eager": predictor.predict_clips}
    for name, (model_file, runtime) in runtimes.items():
        if runtime != "torch":
            engines[name] = Predictor(
                model_file, runtime=runtime, threads=args.threads
            ).predict_clips
    clips = torch.randn(args.batch_size, args.frames, 3, args.input_size, args.input_size)
    model_only = medians(
        time_side_by_side({n: lambda f=f: f(clips) for n, f in engines.items()}, repeats=3)
    )

    reference = results["PyTorch eager"]["p"]
    print(
        f"{args.model}, {args.frames} x {args.input_size}^2 per window, windows of {args.window} s "
        f"every {args.stride} s, batch {args.batch_size}, {args.threads} runtime threads, "
        f"{os.cpu_count()} CPUs; video {duration:.0f} s of {args.width or args.size}x{args.size} "
        f"at {args.fps} fps, {windows} windows"
    )
    print(
        f"{'tcm predict':15s} {'wall s':>7s} {'x realtime':>10s} {'model ms/window':>16s} {'max |dp|':>9s}"
    )
    for name, result in results.items():
        diff = float(np.abs(result["p"] - reference).max()) if len(result["p"]) else float("nan")
        per_window = 1e3 * model_only[name] / args.batch_size
        print(
            f"{name:15s} {result['seconds']:7.1f} {duration / result['seconds']:10.1f} "
            f"{per_window:16.1f} {diff:9.1e}"
        )
    print(
        f"decoding + preparing alone (no model, one thread of work): {decode_seconds:.1f} s "
        f"({1e3 * decode_seconds / max(windows, 1):.1f} ms per window)"
    )
    if args.json:
        summary = {
            name: {
                "seconds": r["seconds"],
                "realtime": duration / r["seconds"],
                "windows": r["windows"],
                "model_ms_per_window": 1e3 * model_only[name] / args.batch_size,
            }
            for name, r in results.items()
        }
        print(json.dumps({"duration": duration, "decode_seconds": decode_seconds, **summary}))
