"""``--allow-module``: the modules a checkpoint's backbone may be imported from.

A checkpoint never makes tcm import code on its own (:mod:`tcm.models.from_checkpoint`); a
model on a user's backbone (``model.name: my_package.nets:TinyCNN``) loads once its module
is allowed for the command.
"""

from __future__ import annotations

import argparse


def add_allow_module_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-module",
        dest="allow_modules",
        action="append",
        default=[],
        metavar="MODULE",
        help=(
            "let the checkpoint's model import its backbone from MODULE (or a submodule of "
            "it); needed only for models on your own backbone (repeatable)"
        ),
    )
