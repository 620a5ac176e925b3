"""``tcm info``: parameters and FLOPs of a model, with TCM's share."""

from __future__ import annotations

import argparse
import json

# tcm info runs the model once on a clip of zeros. Below 32 pixels the backbones (stride 32)
# have nothing left in their last stage; at 64 frames of 512x512 the clip and its activations
# already take several GB. FLOPs grow in proportion to the frames and to the square of the size.
SIZE_RANGE = (32, 512)
FRAMES_RANGE = (1, 64)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="parameters and FLOPs of a model (TCM's share shown separately)",
        description="Count parameters and FLOPs (torch.utils.flop_counter) for one clip.",
    )
    parser.add_argument("model", nargs="?", help="model name; omit to list the models")
    parser.add_argument("--num-classes", type=int, default=174)
    parser.add_argument(
        "--frames",
        type=int,
        default=8,
        help=f"num_segments T, {FRAMES_RANGE[0]} to {FRAMES_RANGE[1]}",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=224,
        help=f"input height and width, {SIZE_RANGE[0]} to {SIZE_RANGE[1]}",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tcm.models import create_model, list_models
    from tcm.models.profile import count_model

    if args.model is None:
        print("\n".join(list_models()))
        return 0
    for flag, value, (low, high), grows in (
        ("--frames", args.frames, FRAMES_RANGE, "in proportion to the frames"),
        ("--size", args.size, SIZE_RANGE, "with the square of the size"),
    ):
        if not low <= value <= high:
            scale = f"; FLOPs grow {grows}: scale those of {high}" if value > high else ""
            raise ValueError(f"{flag} must lie in [{low}, {high}], got {value}{scale}")
    if args.num_classes < 1:
        raise ValueError(f"--num-classes must be at least 1, got {args.num_classes}")
    model = create_model(args.model, args.num_classes, args.frames)
    stats = count_model(model, frames=args.frames, size=args.size)
    if args.json:
        print(json.dumps({"model": args.model, **stats}))
        return 0
    print(f"{args.model}: 1 clip x {args.frames} frames x {args.size}x{args.size}")
    print(
        f"  parameters  {stats['params'] / 1e6:10.2f} M   (TCM {stats['tcm_params'] / 1e6:.3f} M)"
    )
    print(
        f"  FLOPs       {stats['flops'] / 1e9:10.2f} G   "
        f"(TCM {stats['tcm_flops'] / 1e9:.3f} G, {100 * stats['tcm_flop_share']:.2f}%)"
    )
    return 0
