"""``tcm check-data``: open every entry of a list as the loader would; report the bad ones.

Thorough by default (every frame decoded); ``--quick`` decodes only a test clip's frames."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from tcm.data.annotations import read_classes, write_list
from tcm.data.checks import check_records
from tcm.data.frame_names import DEFAULT_FRAME_TEMPLATE
from tcm.data.record_table import read_table
from tcm.data.storage_options import StorageOptions


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check-data",
        help="decode every entry of a list file and report the bad ones",
        description=(
            "Decode every entry of LIST as the loader would and report each bad one with its "
            "reason (missing, empty, truncated, not a video, no video stream, fewer frames than "
            "claimed, missing frame, label out of range). Exit status 1 when any is bad. "
            "--quick reads each file's packets and frame count and decodes only the frames a "
            "test clip samples: minutes instead of hours for a Kinetics-size list."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="decode only the frames of a test clip (--segments frames), not every frame",
    )
    parser.add_argument(
        "--segments", type=int, default=8, help="frames of the test clip of --quick (default 8)"
    )
    parser.add_argument(
        "list", type=Path, metavar="LIST", help="list file ('path [num_frames] label')"
    )
    parser.add_argument(
        "--root", required=True, type=Path, help="folder the list's paths are relative to"
    )
    parser.add_argument(
        "--classes",
        type=Path,
        help="classes.txt, to check label ranges (default: classes.txt beside LIST, if any)",
    )
    parser.add_argument(
        "--frame-template", default=DEFAULT_FRAME_TEMPLATE, help="frame file names in folders"
    )
    parser.add_argument(
        "--frame-start-index", type=int, default=1, help="number of the first frame file"
    )
    parser.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), help="parallel processes"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per bad entry, then a summary"
    )
    parser.add_argument(
        "--good-list", type=Path, metavar="OUT", help="write the good entries to this list file"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tcm.data.frame_names import check_frame_template
    from tcm.utils.files import check_output_file

    check_frame_template(args.frame_template, "--frame-template")
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    if args.segments < 1:
        raise ValueError(f"--segments must be at least 1, got {args.segments}")
    classes_file = args.classes or (args.list.parent / "classes.txt")
    if args.good_list is not None:
        check_output_file(
            args.good_list,
            "--good-list",
            inputs={args.list: "the list being checked", classes_file: "the classes file"},
        )
    records = read_table(args.list)
    num_classes = None
    if args.classes is not None or classes_file.is_file():
        num_classes = len(read_classes(classes_file))
    results = check_records(
        records,
        args.root,
        num_classes=num_classes,
        storage=StorageOptions(
            frame_template=args.frame_template, frame_start_index=args.frame_start_index
        ),
        workers=args.workers,
        progress=not (args.no_progress or args.json),
        quick=args.quick,
        segments=args.segments,
    )
    bad = [result for result in results if not result.ok]
    reasons: dict[str, int] = {}
    for result in bad:
        reasons[result.reason] = reasons.get(result.reason, 0) + 1
    if args.json:
        for result in bad:
            print(json.dumps(result.to_dict()))
        print(json.dumps({"checked": len(results), "bad": len(bad), "reasons": reasons}))
    else:
        for result in bad:
            print(f"{args.list}:{result.line}: {result.message}")
        summary = ", ".join(f"{reason}: {count}" for reason, count in sorted(reasons.items()))
        print(f"{len(results)} entries checked, {len(bad)} bad" + (f" ({summary})" if bad else ""))
    if args.good_list is not None:
        good = [record for record, result in zip(records, results) if result.ok]
        write_list(args.good_list, good)
        if not args.json:
            print(f"{args.good_list}: {len(good)} good entries")
    return 1 if bad else 0
