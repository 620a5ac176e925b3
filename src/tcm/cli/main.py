"""Entry point of the ``tcm`` command.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the
parsed arguments and returning the exit status.

Problems of the user's input and environment end in one line on stderr, ``tcm COMMAND:
error: MESSAGE``, and exit status 2: the project's own errors (:mod:`tcm.errors`, and the
``ValueError`` / ``FileNotFoundError`` the library raises for bad input) and the system's
refusals of a path (permission denied, disk full, a file where a folder is expected, ...).
Ctrl-C ends with status 130. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import re
import sys

from tcm.errors import TcmError

# Modules of this package that provide sub-commands, in the order ``tcm --help`` lists them.
COMMAND_MODULES = (
    "demo",
    "info",
    "convert",
    "prepare",
    "check_data",
    "synth",
    "train",
    "test",
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


# System errors about a path that the user chose (or the state of its disk), not bugs.
USER_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.EEXIST,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ENOENT,
        errno.ENAMETOOLONG,
        errno.ELOOP,
    }
)

# "ValueError: message", the last line of a traceback re-raised from a DataLoader worker.
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*(?:Error|Exception): (.*)$")


def error_line(error: BaseException) -> str:
    """The one-line message of a user-facing error.

    An error re-raised by a DataLoader worker carries the worker's whole traceback in its
    message; its last line holds the original message, which is kept. An ``OSError`` reads
    ``path: reason``.
    """
    if isinstance(error, OSError) and error.strerror:
        if error.filename is None:
            return error.strerror
        return f"{error.filename}: {error.strerror}"
    text = str(error)
    if "Traceback (most recent call last)" in text:
        lines = [line for line in text.splitlines() if line.strip()]
        match = _EXCEPTION_LINE.match(lines[-1].strip()) if lines else None
        text = match[1] if match else (lines[-1].strip() if lines else text)
    return " ".join(text.split("\n")).strip() or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (TcmError, ValueError, FileNotFoundError) as error:
        # Errors of user input: one clear line, no traceback.
        print(f"tcm {args.command}: error: {error_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in USER_ERRNOS:
            raise
        print(f"tcm {args.command}: error: {error_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = "; resume with --resume auto" if args.command == "train" else ""
        print(f"tcm {args.command}: interrupted{hint}", file=sys.stderr)
        return 130


# Commands whose process gains from an allocator that keeps freed memory (tcm.utils.allocator).
ALLOCATOR_COMMANDS = frozenset({"train", "demo"})


def run_command_line() -> int:
    """The ``tcm`` executable (and ``python -m tcm.cli.main``, as torchrun starts it): this
    process is the command's own, so ``train`` and ``demo`` first set the allocator to keep
    freed memory; :func:`main` alone, as called from Python, leaves the host's allocator.
    A rank started by torchrun ends with torchrun (:mod:`tcm.utils.launcher`)."""
    from tcm.utils.launcher import end_with_launcher, under_torchrun

    if under_torchrun():
        end_with_launcher()
    command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    if command in ALLOCATOR_COMMANDS:
        from tcm.utils.allocator import keep_freed_memory

        keep_freed_memory()
    return main()


if __name__ == "__main__":
    sys.exit(run_command_line())
