"""``tcm predict``: classify video files, frame folders and folders of videos."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tcm.cli import predict_long


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
    parser.add_argument("--checkpoint", type=Path, required=True, help="tcm checkpoint")
    parser.add_argument("--topk", type=int, default=5, help="classes shown per input")
    parser.add_argument("--json", action="store_true", help="one JSON object per input")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=4, help="clips per forward pass")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    predict_long.add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tcm.deploy.inputs import expand_inputs
    from tcm.deploy.predictor import Predictor

    predict_long.check_arguments(args)
    if predict_long.wanted(args):
        return predict_long.run(args)
    if args.topk < 1:
        raise ValueError(f"--topk must be positive, got {args.topk}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    predictor = Predictor(args.checkpoint, device=args.device)
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


def _format(prediction) -> str:
    lines = [prediction.path]
    for rank, score in enumerate(prediction.top, 1):
        lines.append(f"  {rank}. {score.probability:7.2%}  {score.label}  ({score.index})")
    return "\n".join(lines)
