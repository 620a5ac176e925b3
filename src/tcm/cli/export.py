"""``tcm export``: a checkpoint to ONNX or TorchScript, checked against PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

from tcm.cli.trust import add_allow_module_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX or TorchScript",
        description=(
            "Export the checkpoint's model with a dynamic batch size, compare it with PyTorch "
            "on random clips (onnxruntime for ONNX) and write the preprocessing and class "
            "names beside it as OUT.json."
        ),
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="tcm checkpoint")
    add_allow_module_argument(parser)
    parser.add_argument("--format", choices=("onnx", "torchscript"), required=True)
    parser.add_argument("--out", type=Path, required=True, help="file to write (.onnx / .pt)")
    parser.add_argument(
        "--onnx-exporter",
        choices=("torchscript", "dynamo"),
        default="torchscript",
        help="torch.onnx exporter: the TorchScript-based one (dynamo=False) or torch.export",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset")
    parser.add_argument(
        "--atol",
        type=float,
        default=1e-4,
        help="difference to PyTorch accepted: atol + rtol * largest |logit| (exit 1 beyond)",
    )
    parser.add_argument("--rtol", type=float, default=1e-5, help="see --atol")
    group = parser.add_argument_group("int8 (ONNX)")
    group.add_argument(
        "--quantize",
        choices=("int8",),
        help="write an int8 model calibrated on --calibration (MTDM stays in float32)",
    )
    group.add_argument(
        "--calibration", type=Path, metavar="LIST", help="labelled clips (path label lines)"
    )
    group.add_argument(
        "--evaluation",
        type=Path,
        metavar="LIST",
        help="labelled clips top-1 is compared on (default: the --calibration clips)",
    )
    group.add_argument(
        "--data-root", type=Path, help="folder the --calibration and --evaluation paths are in"
    )
    group.add_argument(
        "--force",
        action="store_true",
        help="keep an int8 model that loses more than 1 point of top-1 (see --evaluation)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import math

    from tcm.deploy.export import export_checkpoint

    if args.quantize:
        from tcm.cli.export_int8 import check_int8_arguments

        check_int8_arguments(args)
    for flag, value in (("--atol", args.atol), ("--rtol", args.rtol)):
        if not (math.isfinite(value) and value >= 0):  # NaN would pass every comparison
            raise ValueError(f"{flag} must be a number of 0 or more, got {value}")
    try:
        result = export_checkpoint(
            args.checkpoint,
            args.out,
            args.format,
            opset=args.opset,
            onnx_exporter=args.onnx_exporter,
            allow_modules=args.allow_modules,
        )
    except ImportError as error:
        raise ValueError(str(error)) from error
    print(f"wrote {result.path} ({result.exporter}) and {result.metadata_path}")
    print(
        f"largest |{args.format} - PyTorch| on {result.check_batch} random clips: "
        f"{result.max_abs_diff:.3g} (largest |logit| {result.max_abs_logit:.3g})"
    )
    tolerance = args.atol + args.rtol * result.max_abs_logit
    if result.max_abs_diff > tolerance:
        print(f"tcm export: difference above the tolerance {tolerance:.3g} (--atol, --rtol)")
        return 1
    if args.quantize:
        from tcm.cli.export_int8 import quantize_written

        return quantize_written(args)
    return 0
