"""Entry point of the ``tcm`` command.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the
parsed arguments and returning the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules of this package that provide sub-commands, in the order ``tcm --help`` lists them.
COMMAND_MODULES = (
    "demo",
    "info",
    "convert",
    "prepare",
    "check_data",
    "synth",
    "train",
    "evaluate",
    "ensemble",
    "predict",
    "export",
    "visualize",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tcm",
        description="Visual-tempo action recognition with the Temporal Correlation Module.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"tcm.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as error:
        # Errors of user input: one clear line, no traceback.
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"tcm {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
