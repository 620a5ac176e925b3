"""``tcm train``: train a model from a config file or a shipped config name."""

from __future__ import annotations

import argparse
import logging
import os

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a config (YAML file or shipped config name)",
        description=(
            "Train as the config says. The resolved config, metrics.jsonl, last.pt, best.pt "
            "and curves.png are written into the work dir. Run under torchrun for several "
            "processes (GPUs or CPUs, one or many machines); see docs/training.md."
        ),
    )
    parser.add_argument("config", nargs="?", help="config file, or the name of a shipped config")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=0.02 (repeatable)",
    )
    parser.add_argument("--work-dir", help="run folder (default: work_dirs/<config name>)")
    parser.add_argument(
        "--resume",
        metavar="auto|PATH",
        help="continue a run: 'auto' finds the work dir's last checkpoint, or give a checkpoint",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--list", action="store_true", help="list the shipped configs and exit")
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tcm.engine.config_files import list_configs, load_config

    if args.list:
        print("\n".join(list_configs()))
        return 0
    if not args.config:
        raise ValueError("give a config file or shipped config name (tcm train --list)")
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    if int(os.environ.get("RANK", "0")) > 0:
        logging.getLogger().setLevel(logging.WARNING)  # only rank 0 reports

    from tcm.engine.run import train
    from tcm.errors import NonFiniteLossError

    try:
        result = train(cfg, args.work_dir, resume=args.resume, progress=not args.no_progress)
    except NonFiniteLossError as error:
        logger.error("%s", error)
        return 3
    if int(os.environ.get("RANK", "0")) == 0:
        final = result.final
        text = f"done: {result.epochs} epochs, {result.steps} steps; checkpoint {result.checkpoint}"
        if "val_top1" in final:
            text += f"; final val top-1 {final['val_top1']:.2f}%"
        if result.best:
            text += f", best {result.best['val_top1']:.2f}% (epoch {result.best['epoch']})"
        logger.info(text)
    return 0
