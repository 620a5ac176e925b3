"""``tcm prepare folder``: one's own class folders -> ``classes.txt``, ``train.txt``,
``val.txt`` (and ``test.txt``), through :func:`tcm.data.class_folders.scan_class_folders`."""

from __future__ import annotations

import argparse
from pathlib import Path

from tcm.data.official_formats import Annotation, DatasetAnnotations

SHOWN_PROBLEMS = 10
PROBLEMS_FILE = "skipped.txt"


def add_folder_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "class folders ('tcm prepare folder')",
        "--root holds a folder per class (ROOT/<class>/<video or frame folder>), or train/ and "
        "val/ (and test/) folders of class folders, used as they are. Class folders are split "
        "per class by a hash of each clip's path and --seed: the same every time, and stable "
        "when files are added. Unreadable files, files that are no video, empty classes and "
        "classes too small to split are reported (and listed in OUT/skipped.txt); hidden files "
        "are ignored.",
    )
    group.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of each class held out for validation (default 0.2)",
    )
    group.add_argument(
        "--test-fraction",
        type=float,
        default=0.0,
        help="share of each class held out for test.txt (default 0: none)",
    )
    group.add_argument("--seed", type=int, default=0, help="changes which clips are held out")
    group.add_argument(
        "--no-check",
        action="store_true",
        help="do not open every video (faster; unreadable videos then fail at training)",
    )


def annotations_folder(args: argparse.Namespace) -> Path:
    """``--annotations``, which every dataset but ``folder`` needs."""
    if args.annotations is None:
        raise ValueError(f"tcm prepare {args.dataset} needs --annotations FOLDER")
    return args.annotations


def folder_annotations(args: argparse.Namespace) -> DatasetAnnotations:
    """Scan ``--root``, report what was left out, and return the clips as annotations whose
    one candidate is the clip itself (so that the rest of ``tcm prepare`` treats them as it
    treats a dataset's)."""
    from tcm.data.class_folders import scan_class_folders
    from tcm.utils.files import output_dir

    scan = scan_class_folders(
        args.root,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        check=not args.no_check,
    )
    output_dir(args.out, "--out folder")
    problems_file = args.out / PROBLEMS_FILE
    if scan.problems:
        problems_file.write_text("".join(f"{p}\n" for p in scan.problems), encoding="utf-8")
        shown = "\n  ".join(str(p) for p in scan.problems[:SHOWN_PROBLEMS])
        more = len(scan.problems) - SHOWN_PROBLEMS
        print(
            f"{args.root}: {len(scan.problems)} problems (all in {problems_file}):\n  {shown}"
            + (f"\n  ... ({more} more)" if more > 0 else "")
        )
    elif problems_file.exists():
        problems_file.unlink()
    print(f"{args.root}: {scan.layout}, {len(scan.classes)} classes")
    splits = {
        split: [Annotation(r.path, r.label, (r.path,)) for r in records]
        for split, records in scan.splits.items()
    }
    return DatasetAnnotations(scan.classes, splits)
