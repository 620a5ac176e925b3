"""Sliding windows over a long video: windows per second and resident memory, eager PyTorch vs
the ONNX export (ONNX Runtime), on the CPU.

A video of ``--minutes`` minutes is generated once (synthetic visual-tempo clips of two
seconds, a random class each, ``--size`` pixels square at ``--fps``; encoded clip by clip, so
generating it holds no more than one clip either) and read by ``LongVideoPredictor``, as
``tcm predict VIDEO --window 2.0 --stride 0.5`` does, once per engine: eager (with TCM's tempo
probe, as the CLI runs it) and an ONNX file exported as ``tcm export`` makes it. The model has
random weights (the speed does not depend on them).

Printed per engine: windows per second, seconds of video per second of wall time, the peak
resident memory above the process's resident set before the run, the resident set at each
quarter of the video (flat when memory does not grow with the video's length), the most
prepared frames held at once, and the largest probability difference between the engines.
The full passes run one after the other, so load on the machine can favour either; the model
alone on one batch of windows is also timed with the engines alternating.

With ``--end-to-end``, the command itself is timed instead, start-up and decoding included:
``tcm predict VIDEO --window W --stride S`` in a fresh process per runtime, on a checkpoint
(eager PyTorch) and on its ONNX export (ONNX Runtime; OpenVINO where installed), with a
random model whose BatchNorm statistics are calibrated on random clips (so that activations
and logits have realistic scales). Where the time goes is measured apart in this process:
decoding and preparing the frames alone (no model), and the model alone on batches of
windows, the runtimes alternating.

Usage:
    python benchmarks/bench_long_video.py [--minutes 10] [--model tcm_tsm_resnet50]
        [--input-size 224] [--size 240] [--fps 25] [--window 2.0] [--stride 0.5]
        [--batch-size 8] [--threads N] [--video PATH] [--json]
    python benchmarks/bench_long_video.py --end-to-end --model tcm_tsm_mobilenetv2 \
        --width 640 --size 360 --window 2 --stride 1 --threads 2 [--video PATH] [--int8]

With ``--int8`` the end-to-end runs also take the export's int8 version (``tcm export
--quantize int8``, calibrated on 33 clips of ``tcm synth`` at 256 px; the model's weights are
random, so its top-1 means nothing and ``--force`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

import tcm
from side_by_side import medians, time_side_by_side
from tcm.checkpoint import make_checkpoint
from tcm.data.synth import DEFAULT_CLASSES, clip_rng, render_clip
from tcm.deploy import LongVideoPredictor, Predictor
from tcm.deploy.export import export_onnx, onnx_session
from tcm.utils.memory import reset_peak_resident, resident_bytes

MIB = 1024 * 1024


def write_long_video(
    path: Path, minutes: float, size: int, fps: int, seed: int = 0, width: int | None = None
) -> float:
    """Encode ``minutes`` of two-second synthetic clips to ``path`` (H.264); returns seconds.

    Frames are ``size`` pixels square, or ``width`` x ``size`` with the square clip centred on
    a grey field when ``width`` is given (e.g. 640x360)."""
    clip_frames = 2 * fps
    width = width or size
    left = (width - size) // 2
    count = max(1, round(minutes * 60 / 2))
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "23"})
        stream.width, stream.height = width, size
        stream.pix_fmt = "yuv420p"
        canvas = np.full((size, width, 3), 128, dtype=np.uint8)
        for index in range(count):
            name = DEFAULT_CLASSES[int(rng.integers(len(DEFAULT_CLASSES)))]
            frames = render_clip(name, clip_rng(seed, name, index), size=size, frames=clip_frames)
            for image in frames:
                canvas[:, left : left + size] = image
                frame = av.VideoFrame.from_ndarray(canvas, format="rgb24")
                container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return time.perf_counter() - start


def onnx_classifier(model: torch.nn.Module, frames: int, size: int, folder: Path, threads: int):
    """``clips (N, T, 3, S, S) -> probabilities (N, K)`` through an ONNX export of ``model``."""
    path = folder / "model.onnx"
    export_onnx(model, torch.randn(1, frames, 3, size, size), path)
    session = onnx_session(path, threads=threads)

    def classify(clips: torch.Tensor) -> torch.Tensor:
        (logits,) = session.run(["logits"], {"clip": clips.numpy()})
        return torch.from_numpy(logits).softmax(dim=1)

    return classify


def measure(long: LongVideoPredictor, video: Path) -> dict:
    """Run ``long`` over ``video``: speed, memory, and the probabilities (for the parity)."""
    baseline = resident_bytes()
    reset_peak_resident()
    quarters: list[float] = []
    start = time.perf_counter()
    with long.open(video) as run:
        marks = [run.duration * q / 4 for q in (1, 2, 3, 4)]
        for _ in run:
            while marks and run.position >= marks[0] - 1e-6:
                marks.pop(0)
                quarters.append(resident_bytes() / MIB)
    seconds = time.perf_counter() - start
    timeline = run.timeline
    return {
        "windows": len(timeline.windows),
        "seconds": seconds,
        "windows_per_s": len(timeline.windows) / seconds,
        "realtime": timeline.duration / seconds,
        "baseline_mib": baseline / MIB,
        "peak_extra_mib": (resident_bytes(peak=True) - baseline) / MIB,
        "resident_quarters_mib": quarters,
        "peak_frames": run.peak_frames,
        "probabilities": timeline.probabilities(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the video")
    parser.add_argument("--size", type=int, default=240, help="frame side (height) of the video")
    parser.add_argument("--width", type=int, help="frame width of the video (default: --size)")
    parser.add_argument(
        "--end-to-end", action="store_true", help="time tcm predict per runtime (see above)"
    )
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--model", default="tcm_tsm_resnet50")
    parser.add_argument("--frames", type=int, default=8, help="frames per window T")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--window", default="2.0")
    parser.add_argument("--stride", default="0.5")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--video", type=Path, help="reuse (or write) the generated video here")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="with --end-to-end, also the int8 export (calibrated on generated clips) per runtime",
    )
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = tcm.create_model(args.model, num_classes=len(DEFAULT_CLASSES), num_segments=args.frames)
    model.eval()
    checkpoint = make_checkpoint(
        model.state_dict(),
        model_name=args.model,
        num_classes=len(DEFAULT_CLASSES),
        num_segments=args.frames,
        classes=list(DEFAULT_CLASSES),
        data={
            "num_segments": args.frames,
            "resize": round(args.input_size * 256 / 224),
            "input_size": args.input_size,
        },
    )
    predictor = Predictor(checkpoint)

    with tempfile.TemporaryDirectory() as folder:
        video = args.video or Path(folder) / "long.mp4"
        if not video.is_file():
            generated = write_long_video(video, args.minutes, args.size, args.fps, width=args.width)
            print(f"generated {video} ({args.minutes:g} min) in {generated:.0f} s")
        if args.end_to_end:
            from long_video_cli import end_to_end

            end_to_end(model, checkpoint, video, Path(folder), args)
            return
        classify = onnx_classifier(model, args.frames, args.input_size, Path(folder), args.threads)
        engines = {
            "PyTorch eager": LongVideoPredictor(
                predictor, args.window, args.stride, batch_size=args.batch_size
            ),
            "ONNX Runtime": LongVideoPredictor(
                predictor, args.window, args.stride, batch_size=args.batch_size, classify=classify
            ),
        }
        results = {name: measure(long, video) for name, long in engines.items()}
        # The model alone on one batch of windows, the engines alternating (same load).
        clips = torch.randn(args.batch_size, args.frames, 3, args.input_size, args.input_size)
        model_only = medians(
            time_side_by_side(
                {name: lambda long=long: long.classify(clips) for name, long in engines.items()},
                repeats=5,
            )
        )

    reference = results["PyTorch eager"]["probabilities"]
    print(
        f"{args.model}, {args.frames} x {args.input_size}x{args.input_size} per window, windows "
        f"of {args.window} s every {args.stride} s, batch {args.batch_size}, {args.threads} "
        f"threads, torch {torch.__version__}; video {args.minutes:g} min of "
        f"{args.size}x{args.size} at {args.fps} fps"
    )
    print(
        f"{'':15s} {'windows':>8s} {'win/s':>7s} {'x realtime':>10s} {'peak +MiB':>10s} "
        f"{'RSS MiB at 25/50/75/100 %':>27s} {'frames held':>11s} {'max |dp|':>9s}"
    )
    for name, result in results.items():
        quarters = "/".join(f"{value:.0f}" for value in result["resident_quarters_mib"])
        diff = float(np.abs(result["probabilities"] - reference).max())
        result["max_abs_diff"] = diff
        print(
            f"{name:15s} {result['windows']:8d} {result['windows_per_s']:7.1f} "
            f"{result['realtime']:10.1f} {result['peak_extra_mib']:10.1f} {quarters:>27s} "
            f"{result['peak_frames']:11d} {diff:9.1e}"
        )
    alternating = ", ".join(
        f"{name} {1e3 * seconds / args.batch_size:.1f} ms" for name, seconds in model_only.items()
    )
    print(f"model alone per window (batch {args.batch_size}, alternating): {alternating}")
    if args.json:
        for name, seconds in model_only.items():
            results[name]["model_only_ms_per_window"] = 1e3 * seconds / args.batch_size
        summary = {
            name: {key: value for key, value in result.items() if key != "probabilities"}
            for name, result in results.items()
        }
        print(json.dumps({"settings": vars(args) | {"video": str(args.video)}, **summary}))


if __name__ == "__main__":
    main()
