"""``tcm prepare``: official annotation files -> ``classes.txt``, ``train.txt``, ``val.txt``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tcm.data.annotations import (
    PARSERS,
    VideoRecord,
    parse_annotations,
    resolve_media,
    write_classes,
    write_list,
)
from tcm.data.decoding import DEFAULT_FRAME_TEMPLATE

logger = logging.getLogger(__name__)

SHOWN_MISSING = 5


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="write classes.txt and train/val lists from a dataset's official annotations",
        description=(
            "Read the official annotation files of a dataset and write classes.txt (one name "
            "per line, index = line number - 1), train.txt and val.txt ('path label' for "
            "videos, 'path num_frames label' for frame folders, frames counted on disk). "
            "Entries whose media are missing are reported and listed in missing_<split>.txt."
        ),
    )
    parser.add_argument("dataset", choices=sorted(PARSERS), help="dataset of the annotations")
    parser.add_argument(
        "--annotations", required=True, type=Path, help="folder of the official annotation files"
    )
    parser.add_argument(
        "--root", required=True, type=Path, help="folder of the videos or frame folders"
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder for the lists")
    parser.add_argument(
        "--split", type=int, default=1, choices=(1, 2, 3), help="UCF-101 / HMDB-51 split"
    )
    parser.add_argument(
        "--extract-frames",
        type=Path,
        metavar="FRAMES_DIR",
        help="extract the videos' frames to JPEG folders here and list the folders",
    )
    parser.add_argument("--workers", type=int, default=4, help="parallel extraction processes")
    parser.add_argument(
        "--frame-template", default=DEFAULT_FRAME_TEMPLATE, help="name of extracted frames"
    )
    parser.add_argument("--short-side", type=int, help="resize extracted frames to this short side")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _extract(
    records: list[VideoRecord], args: argparse.Namespace
) -> tuple[list[VideoRecord], list[str]]:
    from tcm.data.extract import extract_all

    videos = [r for r in records if r.num_frames is None]
    results = extract_all(
        [r.path for r in videos],
        args.root,
        args.extract_frames,
        workers=args.workers,
        progress=not args.no_progress,
        template=args.frame_template,
        short_side=args.short_side,
    )
    out, failed = [], []
    for record, result in zip(videos, results):
        if result.error:
            failed.append(result.error)
        else:
            out.append(VideoRecord(result.folder, record.label, result.num_frames))
    skipped = len(records) - len(videos)
    if skipped:
        logger.warning("%d entries are frame folders already; not extracted", skipped)
    return out, failed


def run(args: argparse.Namespace) -> int:
    from tcm.data.decoding import check_frame_template
    from tcm.utils.files import check_output_dir, output_dir

    if not args.root.is_dir():
        raise FileNotFoundError(f"data root {args.root} is not a folder")
    check_output_dir(args.out, "--out folder")
    if args.extract_frames is not None:
        check_output_dir(args.extract_frames, "--extract-frames folder")
        check_frame_template(args.frame_template, "--frame-template")
    annotations = parse_annotations(args.dataset, args.annotations, split=args.split)
    output_dir(args.out, "--out folder")
    write_classes(args.out / "classes.txt", annotations.classes)
    print(f"{args.out / 'classes.txt'}: {len(annotations.classes)} classes")
    for split, entries in annotations.splits.items():
        resolved = resolve_media(args.root, entries)
        records = resolved.records
        missing_file = args.out / f"missing_{split}.txt"
        if resolved.missing:
            missing_file.write_text(
                "".join(f"{key}\n" for key in resolved.missing), encoding="utf-8"
            )
            shown = ", ".join(resolved.missing[:SHOWN_MISSING])
            more = len(resolved.missing) - SHOWN_MISSING
            print(
                f"{split}: {len(resolved.missing)} of {len(entries)} entries have no media under "
                f"{args.root}: {shown}{f', ... ({more} more)' if more > 0 else ''} "
                f"(all in {missing_file})"
            )
        elif missing_file.exists():
            missing_file.unlink()
        if args.extract_frames is not None:
            records, failed = _extract(records, args)
            if failed:
                print(f"{split}: {len(failed)} videos could not be extracted, e.g. {failed[0]}")
        count = write_list(args.out / f"{split}.txt", records)
        print(f"{args.out / f'{split}.txt'}: {count} entries")
    if args.extract_frames is not None:
        print(f"frames in {args.extract_frames} (template {args.frame_template}, first index 1)")
    return 0
