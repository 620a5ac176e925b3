"""``tcm prepare``: official annotation files -> ``classes.txt``, ``train.txt``, ``val.txt``;
optionally the videos rewritten once as JPEG folders or as files quick to sample from."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tcm.cli.prepare_folder import add_folder_arguments, annotations_folder, folder_annotations
from tcm.data.annotations import VideoRecord, write_classes, write_list
from tcm.data.frame_names import DEFAULT_FRAME_TEMPLATE
from tcm.data.media_lookup import resolve_media
from tcm.data.official_formats import PARSERS, parse_annotations

logger = logging.getLogger(__name__)

SHOWN_MISSING = 5
REENCODE_SHORT_SIDE = 256


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="write classes.txt and train/val lists from a dataset's official annotations",
        description=(
            "Read the official annotation files of a dataset and write classes.txt (one name "
            "per line, index = line number - 1), train.txt and val.txt ('path label' for "
            "videos, 'path num_frames label' for frame folders, frames counted on disk). "
            "Entries whose media are missing are reported and listed in missing_<split>.txt. "
            "With --extract-frames or --reencode the videos are rewritten once (in parallel, "
            "resumable: finished outputs are kept) and the lists name the new copies; videos "
            "that fail are reported and listed in failed_<split>.txt."
        ),
    )
    parser.add_argument(
        "dataset",
        choices=[*sorted(PARSERS), "folder"],
        help="dataset of the annotations, or 'folder': one's own class folders under --root",
    )
    parser.add_argument("--annotations", type=Path, help="folder of the official annotation files")
    parser.add_argument(
        "--root", required=True, type=Path, help="folder of the videos or frame folders"
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder for the lists")
    parser.add_argument(
        "--split", type=int, default=1, choices=(1, 2, 3), help="UCF-101 / HMDB-51 split"
    )
    rewrite = parser.add_mutually_exclusive_group()
    rewrite.add_argument(
        "--extract-frames",
        type=Path,
        metavar="FRAMES_DIR",
        help="extract the videos' frames to JPEG folders here and list the folders",
    )
    rewrite.add_argument(
        "--reencode",
        type=Path,
        metavar="VIDEOS_DIR",
        help=(
            "re-encode the videos here as MP4 with a key frame every --gop frames and the "
            "same frames and timestamps, and list them: training samples clips several times "
            "faster from them (train with data.root=VIDEOS_DIR)"
        ),
    )
    parser.add_argument(
        "--workers", type=int, default=4, help="parallel extraction or re-encoding processes"
    )
    parser.add_argument(
        "--frame-template", default=DEFAULT_FRAME_TEMPLATE, help="name of extracted frames"
    )
    parser.add_argument(
        "--short-side",
        type=int,
        help=(
            "resize extracted frames to this short side (default: as they are); shrink "
            f"re-encoded videos to it (default {REENCODE_SHORT_SIDE}, never enlarged)"
        ),
    )
    parser.add_argument(
        "--gop",
        type=int,
        default=8,
        help="re-encoding: frames from one key frame to the next (default 8)",
    )
    parser.add_argument(
        "--crf",
        type=int,
        default=20,
        help="re-encoding: x264 quality, lower is better and larger (default 20)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_folder_arguments(parser)
    parser.set_defaults(func=run)


def _rewrite(
    splits: dict[str, list[VideoRecord]], args: argparse.Namespace
) -> dict[str, tuple[list[VideoRecord], list[str]]]:
    """Extract or re-encode the videos of every split in one run: per split, the records of
    the new copies (failed videos left out) and the errors."""
    videos = {
        split: [r for r in records if r.num_frames is None] for split, records in splits.items()
    }
    every = [record.path for records in videos.values() for record in records]
    if args.extract_frames is not None:
        from tcm.data.extract import extract_all

        results = extract_all(
            every,
            args.root,
            args.extract_frames,
            workers=args.workers,
            progress=not args.no_progress,
            template=args.frame_template,
            short_side=args.short_side,
        )
        copies = [(result.folder, result.num_frames, result.error) for result in results]
    else:
        from tcm.data.reencode import reencode_all

        results = reencode_all(
            every,
            args.root,
            args.reencode,
            workers=args.workers,
            progress=not args.no_progress,
            short_side=args.short_side or REENCODE_SHORT_SIDE,
            gop=args.gop,
            crf=args.crf,
        )
        copies = [(result.output, None, result.error) for result in results]
    rewritten = {}
    position = 0
    for split, records in videos.items():
        out, failed = [], []
        for record, (path, num_frames, error) in zip(records, copies[position:]):
            if error:
                failed.append(error)
            else:
                out.append(VideoRecord(path, record.label, num_frames))
        position += len(records)
        skipped = len(splits[split]) - len(records)
        if skipped:
            logger.warning(
                "%s: %d entries are frame folders already; not rewritten", split, skipped
            )
        rewritten[split] = (out, failed)
    return rewritten


def _check_arguments(args: argparse.Namespace) -> None:
    """Folders and options, before anything is read or written."""
    from tcm.data.frame_names import check_frame_template
    from tcm.utils.files import check_output_dir

    if not args.root.is_dir():
        raise FileNotFoundError(f"data root {args.root} is not a folder")
    check_output_dir(args.out, "--out folder")
    if args.extract_frames is not None:
        check_output_dir(args.extract_frames, "--extract-frames folder")
        check_frame_template(args.frame_template, "--frame-template")
    from tcm.data.reencode import check_settings

    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    if args.reencode is not None:
        check_output_dir(args.reencode, "--reencode folder")
        if args.reencode.resolve() == args.root.resolve():
            raise ValueError("--reencode needs a folder other than --root (the originals)")
        check_settings(short_side=args.short_side, gop=args.gop, crf=args.crf, name=flag)
    else:  # extracted frames: the same smallest size
        check_settings(short_side=args.short_side, name=flag)


def _check_originals_outside(args: argparse.Namespace, splits: dict[str, list[VideoRecord]]):
    """Re-encoded copies must not go where originals are: the folder would then hide them from
    later runs (see :data:`~tcm.data.annotations.REENCODE_SETTINGS_FILE`)."""
    if args.reencode is None:
        return
    target = args.reencode.resolve()
    root = args.root.resolve()
    for records in splits.values():
        for record in records:
            if target in (root / record.path).parents:
                raise ValueError(
                    f"{args.root / record.path} lies in {target}, the folder the copies go to; "
                    "choose a folder that holds no video of --root"
                )


def _report_missing(args: argparse.Namespace, split: str, resolved, total: int) -> None:
    """Name the entries of ``split`` with no media (and list them all in ``missing_SPLIT.txt``)."""
    missing_file = args.out / f"missing_{split}.txt"
    if resolved.missing:
        missing_file.write_text("".join(f"{key}\n" for key in resolved.missing), encoding="utf-8")
        shown = ", ".join(resolved.missing[:SHOWN_MISSING])
        more = len(resolved.missing) - SHOWN_MISSING
        print(
            f"{split}: {len(resolved.missing)} of {total} entries have no media under "
            f"{args.root}: {shown}{f', ... ({more} more)' if more > 0 else ''} "
            f"(all in {missing_file})"
        )
    elif missing_file.exists():
        missing_file.unlink()


def run(args: argparse.Namespace) -> int:
    from tcm.utils.files import output_dir

    _check_arguments(args)
    rewriting = args.extract_frames is not None or args.reencode is not None
    if args.dataset == "folder":
        annotations = folder_annotations(args)
    else:
        annotations = parse_annotations(args.dataset, annotations_folder(args), split=args.split)
    output_dir(args.out, "--out folder")
    write_classes(args.out / "classes.txt", annotations.classes)
    print(f"{args.out / 'classes.txt'}: {len(annotations.classes)} classes")
    splits = {}
    for split, entries in annotations.splits.items():
        resolved = resolve_media(args.root, entries)
        splits[split] = resolved.records
        _report_missing(args, split, resolved, len(entries))
    if rewriting:
        _check_originals_outside(args, splits)
        rewritten = _rewrite(splits, args)
    for split, records in splits.items():
        failed_file = args.out / f"failed_{split}.txt"
        if rewriting:
            records, failed = rewritten[split]
            if failed:
                failed_file.write_text("".join(f"{error}\n" for error in failed), encoding="utf-8")
                shown = "\n  ".join(failed[:SHOWN_MISSING])
                more = len(failed) - SHOWN_MISSING
                print(
                    f"{split}: {len(failed)} videos could not be rewritten, left out of the "
                    f"list (all in {failed_file}):\n  {shown}"
                    + (f"\n  ... ({more} more)" if more > 0 else "")
                )
            elif failed_file.exists():
                failed_file.unlink()
        count = write_list(args.out / f"{split}.txt", records)
        print(f"{args.out / f'{split}.txt'}: {count} entries")
    if args.extract_frames is not None:
        print(f"frames in {args.extract_frames} (template {args.frame_template}, first index 1)")
    if args.reencode is not None:
        print(f"videos in {args.reencode}: train with data.root={args.reencode}")
    return 0
