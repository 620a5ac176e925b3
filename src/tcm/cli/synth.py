"""``tcm synth``: write a synthetic visual-tempo data set (classes that differ only in motion)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from tcm.data.synth import CLASS_SPECS, DEFAULT_CLASSES, SynthConfig, write_synth_dataset
from tcm.utils.files import check_output_dir

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = SynthConfig()
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic data set whose classes differ only in how things move",
        description=(
            "Render clips whose classes differ only in motion (direction, tempo, temporal "
            "order) on textured random backgrounds with distractors and camera shake, encode "
            "them as H.264 MP4 and write classes.txt, train.txt, val.txt, test.txt (list "
            "format 'path label', paths relative to --out), groups.json (class -> group) and "
            "synth.json (the settings). The same seed writes byte-identical files."
        ),
    )
    parser.add_argument("--out", type=Path, help="output folder (required unless --list-classes)")
    parser.add_argument(
        "--classes",
        nargs="+",
        metavar="NAME",
        default=list(DEFAULT_CLASSES),
        help="classes to generate, in label order ('moving_left' or 'moving left'; default: "
        "all, see --list-classes)",
    )
    parser.add_argument(
        "--clips-per-class",
        type=int,
        default=defaults.clips_per_class,
        help="clips of each class over all splits (default %(default)s)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=defaults.size,
        help="frame side in pixels, even (default %(default)s)",
    )
    parser.add_argument(
        "--frames", type=int, default=defaults.frames, help="frames per clip (default %(default)s)"
    )
    parser.add_argument(
        "--fps",
        type=int,
        default=defaults.fps,
        help="frame rate of the files (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="default %(default)s")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=defaults.val_fraction,
        help="share of each class in val.txt (default %(default)s)",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=defaults.test_fraction,
        help="share of each class in test.txt, 0 for no test split (default %(default)s)",
    )
    parser.add_argument(
        "--crf", type=int, default=defaults.crf, help="x264 quality, lower is better (%(default)s)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="parallel processes; the files do not depend on it (default %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--list-classes", action="store_true", help="print the known classes and exit"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list_classes:
        for spec in CLASS_SPECS.values():
            print(f"{spec.name:16s} {spec.group:10s} {spec.description}")
        return 0
    if args.out is None:
        raise ValueError("--out is required")
    check_output_dir(args.out, "--out folder")
    config = SynthConfig(
        classes=tuple(args.classes),
        clips_per_class=args.clips_per_class,
        size=args.size,
        frames=args.frames,
        fps=args.fps,
        seed=args.seed,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        crf=args.crf,
    )
    summary = write_synth_dataset(
        args.out, config, workers=args.workers, progress=not args.no_progress
    )
    groups = config.groups()
    for group in dict.fromkeys(groups.values()):
        names = [name for name, of in groups.items() if of == group]
        print(f"{group}: {', '.join(names)}")
    print(f"{summary.classes}: {len(config.classes)} classes; groups in {summary.groups}")
    for split, path in summary.lists.items():
        print(f"{path}: {summary.counts[split]} clips")
    print(
        f"{sum(summary.counts.values())} clips of {config.frames} frames at "
        f"{config.size}x{config.size} in {summary.seconds:.1f} s"
    )
    return 0
