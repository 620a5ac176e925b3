"""``tcm test``: evaluate a checkpoint with several clips x crops per video."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from pathlib import Path

from tcm.cli.trust import add_allow_module_argument

logger = logging.getLogger(__name__)


def parse_views(text: str) -> tuple[int, int]:
    """``"2x3"`` -> ``(2, 3)`` (clips per video, crops per clip)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match[1]) < 1 or int(match[2]) not in (1, 3):
        raise argparse.ArgumentTypeError(
            f"expected CLIPSxCROPS with CROPS 1 or 3 (e.g. 1x1, 2x3), got {text!r}"
        )
    return int(match[1]), int(match[2])


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "test",
        help="evaluate a checkpoint: top-1/5, mean class accuracy, per-class CSV, confusion",
        description=(
            "Evaluate a checkpoint on the config's test list (data.test_list, else "
            "data.val_list). Scores are averaged over views after the softmax. Writes "
            "scores.npz (for tcm ensemble), per_class.csv, confusion.png and metrics.json."
        ),
    )
    parser.add_argument("config", help="config file or shipped config name (data paths)")
    parser.add_argument("--checkpoint", required=True, type=Path, help="checkpoint to evaluate")
    add_allow_module_argument(parser)
    parser.add_argument(
        "--views", type=parse_views, help="CLIPSxCROPS per video (default: the config's eval)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (repeatable)",
    )
    parser.add_argument(
        "--list", dest="list_file", help="list file to test on (overrides the config)"
    )
    parser.add_argument("--out", type=Path, help="output folder (default: next to the checkpoint)")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--compile", action="store_true", help="run the model through torch.compile"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tcm.engine.config_checks import check_config
    from tcm.engine.config_files import load_config
    from tcm.engine.shared_memory import check_shared_memory
    from tcm.models.compiled import compile_model

    overrides = list(args.overrides)
    if args.list_file:
        overrides.append(f"data.test_list={args.list_file}")
    cfg = load_config(args.config, overrides)
    if args.views:
        cfg = cfg.replace({"eval.num_clips": args.views[0], "eval.num_crops": args.views[1]})
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"{args.checkpoint}: no such checkpoint")
    _, classes = check_config(cfg, training=False)
    check_shared_memory(cfg, training=False)
    clips, crops = cfg.eval.num_clips, cfg.eval.num_crops
    model, checkpoint = _load_model(args.checkpoint, classes, _allowed_modules(cfg, args))
    if args.compile:
        compile_model(model, in_place=True)  # its calls run through torch.compile, per batch shape
    out = args.out or args.checkpoint.parent / f"test_{args.checkpoint.stem}_{clips}x{crops}"
    result = _evaluate(cfg, model, classes or checkpoint.get("classes"), (clips, crops), out, args)
    if int(os.environ.get("RANK", "0")) > 0:
        return 0
    summary = {"checkpoint": str(args.checkpoint), **result.summary(), "out": str(out)}
    if args.json:
        print(json.dumps(summary))
        return 0
    print(
        f"{result.num_videos} videos, {clips}x{crops} views: top-1 {result.top1:.2f}%  "
        f"top-5 {result.top5:.2f}%  mean class {result.mean_class_acc:.2f}%"
    )
    if result.skipped:
        print(
            f"{len(result.skipped)} videos could not be read and are left out "
            f"(data.bad_sample_policy=skip), e.g. {result.skipped[0].message}; "
            f"all in {out / 'metrics.json'}"
        )
    print(f"scores, per-class accuracy and confusion matrix in {out}")
    return 0


def _allowed_modules(cfg, args: argparse.Namespace) -> list[str]:
    """``--allow-module``, and the module of the config's own backbone: the user chose it."""
    from tcm.models.custom import import_module_name, is_import_path

    own = [import_module_name(cfg.model.name)] if is_import_path(cfg.model.name) else []
    return [*args.allow_modules, *own]


def _load_model(path: Path, classes: list[str] | None, allow_modules: list[str]):
    """The checkpoint's model and the checkpoint; its class count must match ``classes``."""
    from tcm.models import model_from_checkpoint

    model, checkpoint = model_from_checkpoint(path, allow_modules=allow_modules)
    if classes is not None and len(classes) != model.num_classes:
        raise ValueError(
            f"{path} has {model.num_classes} classes but data.classes lists {len(classes)}"
        )
    return model, checkpoint


def _evaluate(cfg, model, classes, views: tuple[int, int], out: Path, args):
    """Evaluate ``model`` on the config's test list with the config's preprocessing."""
    import torch

    from tcm.engine.distributed import cleanup, init_distributed
    from tcm.engine.evaluation import evaluate
    from tcm.engine.preprocessing import preprocessing_from_config, storage_from_config
    from tcm.utils.files import check_output_dir

    prep = preprocessing_from_config(cfg, mean=model.mean, std=model.std)
    if prep.num_segments != model.num_segments:
        logger.warning(
            "testing a %d-frame model with %d-frame clips (model.num_segments of the config)",
            model.num_segments,
            prep.num_segments,
        )
    check_output_dir(out, "--out folder")
    workers = cfg.eval.num_workers
    torch.multiprocessing.set_sharing_strategy(cfg.data.sharing_strategy)
    ctx = init_distributed(cfg.train.device, cfg.dist.backend, cfg.dist.timeout_min)
    try:
        return evaluate(
            model,
            cfg.data.test_list or cfg.data.val_list,
            cfg.data.root,
            num_clips=views[0],
            num_crops=views[1],
            prep=prep,
            batch_size=cfg.eval.batch_size,
            num_workers=workers if workers is not None else cfg.data.num_workers,
            amp=cfg.train.amp,
            classes=classes,
            out_dir=out,
            progress=not args.no_progress and not args.json,
            ctx=ctx,
            storage=storage_from_config(cfg),
        )
    finally:
        cleanup(ctx)
