"""``tcm convert``: a TCM or TSM release checkpoint to the project's checkpoint format."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a TCM or TSM release checkpoint to a tcm checkpoint",
        description=(
            "Read a TCM release checkpoint (TSM-ResNet-50 + TCM after layer2) or a TSM release "
            "checkpoint (TSN/TSM ResNet-50 or MobileNetV2) and write a tcm checkpoint that "
            "records the model, its classes and its preprocessing."
        ),
    )
    parser.add_argument("src", type=Path, help="reference checkpoint (.pth / .pth.tar)")
    parser.add_argument("dst", type=Path, help="tcm checkpoint to write")
    parser.add_argument(
        "--model",
        help="tcm model name (default: told by the checkpoint's keys, e.g. tsm_mobilenetv2)",
    )
    parser.add_argument(
        "--num-segments", type=int, default=8, help="frames per clip it was trained on"
    )
    parser.add_argument("--labels", type=Path, help="class names, one per line (index = line - 1)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from tcm.checkpoint import atomic_save, make_checkpoint, not_saved_by_torch
    from tcm.data import Preprocessing
    from tcm.errors import OutputError
    from tcm.models import create_model
    from tcm.models.convert import convert_official_checkpoint, release_model_name
    from tcm.models.plugin import shifted_layers

    if not args.src.is_file():
        raise FileNotFoundError(f"{args.src}: no such checkpoint file")
    if args.dst.is_dir():
        raise OutputError(f"{args.dst}: is a folder; give the file to write")
    if args.dst.exists() and args.dst.samefile(args.src):
        raise OutputError(f"{args.dst}: is the checkpoint being converted; choose another file")
    classes = _load_labels(args.labels) if args.labels else None  # checked before the work
    not_saved = not_saved_by_torch(args.src)
    if not_saved:
        raise ValueError(f"{args.src}: not a readable checkpoint ({not_saved})")
    try:
        raw = torch.load(args.src, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{args.src}: not a readable checkpoint ({error})") from error
    try:
        told = release_model_name(raw)
        args.model = args.model or told
        state = convert_official_checkpoint(raw)
        if "fc.weight" not in state:
            raise ValueError("no classifier weights (new_fc.weight) in the checkpoint")
        num_classes = state["fc.weight"].shape[0]
        model = create_model(args.model, num_classes=num_classes, num_segments=args.num_segments)
        state = convert_official_checkpoint(raw, model.state_dict())
        _check_shift_placement(raw, shifted_layers(model.backbone), told, args.model)
    except ValueError as error:
        raise ValueError(f"{args.src}: {error}") from error
    model.load_state_dict(state)
    checkpoint = make_checkpoint(
        state,
        model_name=args.model,
        num_classes=num_classes,
        num_segments=args.num_segments,
        classes=classes,
        # The reference recipe's test-time preprocessing (resize 240x320, centre crop 224,
        # ImageNet mean and std): the defaults.
        data=Preprocessing(num_segments=args.num_segments).to_dict(),
        source=str(args.src),
    )
    atomic_save(checkpoint, args.dst)
    print(f"wrote {args.dst}: {args.model}, {num_classes} classes, {args.num_segments} segments")
    return 0


def _check_shift_placement(raw, in_model: list[str], told: str, model: str) -> None:
    """The file's temporal shift is the model's: the same layers, or none in either (a TSN file
    into a TSM model, or the reverse, would convert without a word and predict wrongly). The
    TCM release trains on TSM without marking its shifted layers: its model must shift."""
    from tcm.models.convert import release_shifted_layers

    in_file = release_shifted_layers(raw)
    if not in_file and told.startswith("tcm_tsm"):
        if not in_model:
            raise ValueError(
                f"the checkpoint is of the TCM release, trained with the temporal shift (a "
                f"{told}), but the model {model} shifts no layer: convert to a tcm_tsm_ model, "
                "or leave out --model"
            )
        return
    if sorted(in_file) == sorted(in_model):
        return

    def layers(names: list[str]) -> str:
        more = ", ..." if len(names) > 3 else ""
        return f"{len(names)} layers ({', '.join(sorted(names)[:3])}{more})"

    advice = f"convert to {told}, or leave out --model"
    if not in_file:
        raise ValueError(
            f"the checkpoint has no temporally shifted layer (a {told}), but the model {model} "
            f"shifts {layers(in_model)}: {advice}"
        )
    if not in_model:
        raise ValueError(
            f"the checkpoint shifts {layers(in_file)} (a {told}), but the model {model} shifts "
            f"none: {advice}"
        )
    only_file = sorted(set(in_file) - set(in_model))[:3]
    only_model = sorted(set(in_model) - set(in_file))[:3]
    raise ValueError(
        f"the checkpoint shifts other layers than the model {model}: "
        f"only in the file {only_file}, only in the model {only_model}"
    )


def _load_labels(path: Path) -> list[str]:
    """Class names from a text file, one per line (index = line number - 1), read as
    :func:`tcm.data.read_classes` reads ``classes.txt``: a name listed twice is an error."""
    from tcm.data.annotations import read_classes

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such label file")
    names = read_classes(path)
    if not names:
        raise ValueError(f"{path}: label file holds no class names")
    return names
