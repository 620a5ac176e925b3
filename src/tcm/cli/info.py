"""``tcm info``: parameters and FLOPs of a model, with TCM's share."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="parameters and FLOPs of a model (TCM's share shown separately)",
        description="Count parameters and FLOPs (torch.utils.flop_counter) for one clip.",
    )
    parser.add_argument("model", nargs="?", help="model name; omit to list the models")
    parser.add_argument("--num-classes", type=int, default=174)
    parser.add_argument("--frames", type=int, default=8, help="num_segments T")
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tcm.models import create_model, list_models
    from tcm.utils.profile import count_model

    if args.model is None:
        print("\n".join(list_models()))
        return 0
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
