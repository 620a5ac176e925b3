"""``tcm predict``: classify video files, frame folders and folders of videos.

Each INPUT is classified as one clip and its top classes are printed (one JSON object per
input with ``--json``).

Window mode: with ``--window`` (or ``--stream``, or ``--timeline``), ``tcm predict`` slides a
window over each INPUT instead, to say what happens when in long videos and live streams (see
:mod:`tcm.deploy.timeline`), and writes

- as text: the merged segments (and the stretches that could not be decoded), in time order;
  with ``--stream``, the top class of every window as it completes;
- with ``--json``: JSON lines, as they come: ``{"type": "window", "path", "start", "end",
  "classes", "probabilities"}`` per window (plus ``"tempo": {"fast", "slow"}`` with a TCM
  model), ``{"type": "skipped", "path", "start", "end", "reason", "frames", "windows"}`` per
  unreadable stretch, then ``{"type": "segment", "path", "start", "end", "label", "index",
  "probability", "windows"}`` per segment; times in seconds;
- with ``--timeline FILE.png``: the picture of :mod:`tcm.deploy.timeline_plot`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tcm.cli.trust import add_allow_module_argument

DEFAULT_WINDOW = "2.0"
DEFAULT_THRESHOLD = 0.5


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="classify videos with a trained checkpoint",
        description=(
            "Classify each INPUT (a video file, a frame folder, or a folder of videos) with the "
            "checkpoint's model, class names and test preprocessing. Inputs that cannot be read "
            "are reported and skipped; the exit status is 1 if any failed. With --window, "
            "slides a window over long videos or streams instead (see below)."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="tcm checkpoint, or an exported model.onnx (its .json beside it)",
    )
    parser.add_argument(
        "--runtime",
        choices=("torch", "onnxruntime", "openvino"),
        help="what runs the model: torch for a checkpoint (default), onnxruntime (default) or "
        "openvino for an exported .onnx",
    )
    parser.add_argument(
        "--threads", type=int, help="CPU threads of onnxruntime / openvino (default: all)"
    )
    add_allow_module_argument(parser)
    parser.add_argument("--topk", type=int, default=5, help="classes shown per input")
    parser.add_argument("--json", action="store_true", help="one JSON object per input")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=4, help="clips per forward pass")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--compile", action="store_true", help="run the model through torch.compile"
    )
    _add_window_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tcm.deploy.inputs import expand_inputs

    _check_window_arguments(args)
    if _window_mode(args):
        return _run_windows(args)
    if args.topk < 1:
        raise ValueError(f"--topk must be positive, got {args.topk}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    predictor = _predictor(args)
    paths = expand_inputs(args.inputs)
    if not paths:
        print("tcm predict: no input found", file=sys.stderr)
        return 1
    show_bar = not args.no_progress and (
        len(paths) > 1 or any(Path(p).is_dir() for p in args.inputs)
    )
    bar = tqdm(total=len(paths), unit="video", disable=not show_bar, file=sys.stderr)
    failed = 0
    try:
        for prediction in predictor.predict_many(
            paths, topk=args.topk, batch_size=args.batch_size, on_result=lambda _: bar.update()
        ):
            if not prediction.ok:
                failed += 1
                bar.write(f"tcm predict: {prediction.message}", file=sys.stderr)
            if args.json:
                print(json.dumps(prediction.to_dict()), flush=True)
            elif prediction.ok:
                bar.write(_format(prediction), file=sys.stdout)
    finally:
        bar.close()
    if failed:
        print(f"tcm predict: {failed} of {len(paths)} inputs could not be read", file=sys.stderr)
    return 1 if failed else 0


def _predictor(args: argparse.Namespace):
    """The ``Predictor`` the arguments ask for: checkpoint or exported model, runtime, threads,
    allowed modules; its model's calls run through ``torch.compile`` with ``--compile``."""
    from tcm.deploy.predictor import Predictor
    from tcm.models.compiled import compile_model

    predictor = Predictor(
        args.checkpoint,
        device=args.device,
        allow_modules=args.allow_modules,
        runtime=args.runtime,
        threads=args.threads,
    )
    if args.compile:
        if predictor.model is None:
            raise ValueError(
                "--compile applies to tcm checkpoints run by torch, not exported models"
            )
        compile_model(predictor.model, in_place=True)  # the module, names and hooks stay
    return predictor


def _format(prediction) -> str:
    lines = [prediction.path]
    for rank, score in enumerate(prediction.top, 1):
        lines.append(f"  {rank}. {score.probability:7.2%}  {score.label}  ({score.index})")
    return "\n".join(lines)


# Window mode: which class happens when in long videos and live streams.
def _add_window_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "long videos and streams",
        "Slide a window over each INPUT and report which class happens when (window mode: "
        "on with --window, --stream or --timeline). Lengths are seconds (2.0, 2s) or frames "
        "(64f). --batch-size counts windows per forward pass.",
    )
    group.add_argument(
        "--window", metavar="LENGTH", help=f"window length (default {DEFAULT_WINDOW} s)"
    )
    group.add_argument(
        "--stride",
        metavar="LENGTH",
        help="time between window starts (default: a quarter of the window)",
    )
    group.add_argument(
        "--threshold",
        type=float,
        metavar="P",
        help=(
            f"smallest top-class probability of a window in a segment (default {DEFAULT_THRESHOLD})"
        ),
    )
    group.add_argument(
        "--timeline",
        type=Path,
        metavar="FILE.png",
        help="draw the class probabilities, segments, thumbnails and TCM's tempo over time",
    )
    group.add_argument(
        "--stream",
        action="store_true",
        help=(
            "INPUT is a live source PyAV opens (a stream URL, a webcam device): print the top "
            "class of each window as it completes; Ctrl-C stops and reports the segments"
        ),
    )
    group.add_argument(
        "--input-format",
        metavar="FMT",
        help="FFmpeg input format of the source, e.g. v4l2 for /dev/video0",
    )


def _window_mode(args: argparse.Namespace) -> bool:
    """Whether the arguments ask for window mode."""
    return args.window is not None or args.stream or args.timeline is not None


def _check_window_arguments(args: argparse.Namespace) -> None:
    """Window options without window mode, or out of range, and a ``--timeline`` that cannot
    be written: a ``ValueError``, before any work."""
    if not _window_mode(args):
        for option in ("stride", "threshold", "input_format"):
            if getattr(args, option) is not None:
                flag = "--" + option.replace("_", "-")
                raise ValueError(f"{flag} needs window mode (--window, --stream or --timeline)")
        return
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise ValueError(f"--threshold must lie in [0, 1], got {args.threshold}")
    if args.timeline is not None:
        if len(args.inputs) != 1:
            raise ValueError(f"--timeline draws one video; {len(args.inputs)} inputs given")
        from tcm.deploy.timeline_plot import PICTURE_SUFFIXES
        from tcm.utils.files import check_output_file

        check_output_file(
            args.timeline,
            "--timeline",
            suffixes=PICTURE_SUFFIXES,
            inputs={args.checkpoint: "the checkpoint", args.inputs[0]: "the input"},
        )


def _run_windows(args: argparse.Namespace) -> int:
    """Window mode: a timeline per input; 1 when any input gave no result."""
    from tcm.deploy.timeline import LongVideoPredictor
    from tcm.deploy.window_plan import Span

    if args.topk < 1:
        raise ValueError(f"--topk must be positive, got {args.topk}")
    window = Span.parse(args.window or DEFAULT_WINDOW)
    stride = Span.parse(args.stride) if args.stride is not None else None
    predictor = _predictor(args)
    long = LongVideoPredictor(predictor, window, stride, batch_size=args.batch_size)
    failed = sum(not _one_window_input(long, source, args) for source in args.inputs)
    if failed and len(args.inputs) > 1:
        print(f"tcm predict: {failed} of {len(args.inputs)} inputs gave no result", file=sys.stderr)
    return 1 if failed else 0


def _progress_bar(run, source: str, args: argparse.Namespace):
    """A bar over the input's seconds (elapsed time only when the length is unknown)."""
    from tqdm import tqdm

    total = round(run.duration, 2) if run.duration else None
    show = not (args.no_progress or args.stream)
    bar = tqdm(total=total, unit="s", disable=not show, file=sys.stderr, desc=Path(source).name)
    bar.bar_format = (
        "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}]"
    )
    if total is None:
        bar.bar_format = "{desc}: {n:.1f} s [{elapsed}]"
    return bar


def _follow(run, source: str, args: argparse.Namespace) -> None:
    """Run the windows of one input to its end (or Ctrl-C), printing as they come."""
    from tcm.deploy.timeline_records import BadStretch

    bar = _progress_bar(run, source, args)
    try:
        with run:
            try:
                for event in run:
                    bar.update(round(run.position - bar.n, 3))
                    if isinstance(event, BadStretch):
                        bar.write(f"tcm predict: {source}: {_stretch_text(event)}", sys.stderr)
                        if args.json:
                            print(_json_line("skipped", source, event.to_dict()), flush=True)
                    elif args.json:
                        record = event.to_dict(run.timeline.classes, args.topk)
                        print(_json_line("window", source, record), flush=True)
                    elif args.stream:
                        best = event.top(run.timeline.classes, 1)[0]
                        print(
                            f"{event.end:9.2f} s  {best.label}  {best.probability:.1%}",
                            flush=True,
                        )
            except KeyboardInterrupt:
                bar.write(f"tcm predict: {source}: stopped at {run.position:.2f} s", sys.stderr)
    finally:
        bar.close()


def _one_window_input(long, source: str, args: argparse.Namespace) -> bool:
    """Run one input; ``False`` when it could not be read or held no complete window."""
    from tcm.deploy.predictor import READ_ERRORS

    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    try:
        run = long.open(source, live=args.stream, input_format=args.input_format)
    except READ_ERRORS as error:
        _report_failure(source, error, args.json)
        return False
    _follow(run, source, args)
    timeline = run.timeline
    if not timeline.windows:
        message = (
            f"{source}: no complete window of {timeline.window:g} s in {timeline.duration:.2f} s"
        )
        print(f"tcm predict: {message}", file=sys.stderr)
        return False
    segments = timeline.segments(threshold)
    if args.json:
        for segment in segments:
            print(_json_line("segment", source, segment.to_dict()), flush=True)
    else:
        print(_summary(timeline, segments))
    if args.timeline is not None:
        from tcm.deploy.timeline_plot import write_timeline

        path = write_timeline(timeline, args.timeline, threshold=threshold)
        print(f"tcm predict: wrote {path}", file=sys.stderr)
    return True


def _report_failure(source: str, error: Exception, as_json: bool) -> None:
    if as_json:
        reason = getattr(error, "reason", "unreadable")
        print(json.dumps({"path": source, "error": reason, "message": str(error)}), flush=True)
    print(f"tcm predict: {error}", file=sys.stderr)


def _json_line(kind: str, source: str, record: dict) -> str:
    return json.dumps({"type": kind, "path": source, **record})


def _stretch_text(stretch, *, times: bool = True) -> str:
    where = f" {stretch.start:.2f}-{stretch.end:.2f} s" if times else ""
    return f"skipped{where}: {stretch.reason} ({stretch.frames} frames, {stretch.windows} windows)"


def _summary(timeline, segments) -> str:
    lines = [
        f"{timeline.source}: {timeline.duration:.2f} s, {len(timeline.windows)} windows of "
        f"{timeline.window:g} s every {timeline.stride:g} s, {len(segments)} segments"
    ]
    width = max((len(s.label) for s in segments), default=0)
    rows = [
        (s.start, f"{s.label:{width}s}  {s.probability:6.1%}  ({s.windows} windows)", s.end)
        for s in segments
    ]
    rows += [(s.start, _stretch_text(s, times=False), s.end) for s in timeline.stretches]
    for start, text, end in sorted(rows, key=lambda row: row[0]):
        lines.append(f"  {start:8.2f} - {end:8.2f} s  {text}")
    return "\n".join(lines)
