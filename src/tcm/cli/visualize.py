"""``tcm visualize``: TCM's displacement fields, confidence and temporal attention."""

from __future__ import annotations

import argparse
from pathlib import Path

from tcm.cli.trust import add_allow_module_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "visualize",
        help="draw TCM's displacement fields and TAM's attention for one input",
        description=(
            "Run the checkpoint's model on INPUT (a video file or a frame folder) and draw, for "
            "every sampled frame, TCM's fast and slow displacement fields and their "
            "confidence, with TAM's temporal attention below. A .png holds every frame; a "
            ".gif shows one frame at a time."
        ),
    )
    parser.add_argument("input", type=Path, metavar="INPUT")
    parser.add_argument("--checkpoint", type=Path, required=True, help="tcm checkpoint")
    add_allow_module_argument(parser)
    parser.add_argument("--out", type=Path, required=True, help="FILE.png or FILE.gif")
    parser.add_argument(
        "--flow",
        choices=("color", "arrows", "both"),
        default="both",
        help="fields as colour (hue = direction), arrows, or both",
    )
    parser.add_argument("--stage", help="TCM layer to show (default: the first)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from tcm.deploy.visualize import visualize

    result = visualize(
        args.checkpoint,
        args.input,
        args.out,
        flow=args.flow,
        stage=args.stage,
        device=args.device,
        allow_modules=args.allow_modules,
    )
    print(
        f"wrote {result.path}: {result.top_label} ({result.top_probability:.1%}), "
        f"TCM after {result.maps.stage}, {result.maps.stride:g} px per field cell"
    )
    return 0
