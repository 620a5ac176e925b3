"""The ``tcm`` entry point: user errors end in one line and status 2, bugs keep their traceback."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tcm.cli.info
from tcm.cli.main import main
from tcm.data.bad_video import BadVideoError
from tcm.errors import ConfigError, DataError, OutputError, TcmError, WorkDirError

REPO = Path(__file__).resolve().parents[2]


# The project's errors and the user-path refusals, with the start of their one-line message.
USER_ERRORS = [
    (TcmError("the run is broken"), "the run is broken"),
    (WorkDirError("runs/a is in use"), "runs/a is in use"),
    (OutputError("out.pt would overwrite a checkpoint"), "out.pt would overwrite a checkpoint"),
    (DataError("no readable sample"), "no readable sample"),
    (ConfigError("unknown key 'optim.lrr'"), "unknown key 'optim.lrr'"),
    (BadVideoError("clip.mp4", "truncated", "no packet"), "clip.mp4: truncated (no packet)"),
    (ValueError("--topk must be positive, got 0"), "--topk must be positive, got 0"),
    (FileNotFoundError("best.pt: no such checkpoint file"), "best.pt: no such checkpoint"),
    (PermissionError(errno.EACCES, "Permission denied", "runs/x"), "runs/x: Permission denied"),
    (OSError(errno.ENOSPC, "No space left on device", "last.pt"), "last.pt: No space left"),
]


def command_raising(monkeypatch, error: BaseException) -> None:
    """Make ``tcm info`` raise ``error``."""

    def run(args):
        raise error

    monkeypatch.setattr(tcm.cli.info, "run", run)


@pytest.mark.parametrize(
    "error",
    [
        KeyError("num_segments"),
        AttributeError("'NoneType' object has no attribute 'shape'"),
        TypeError("unsupported operand type(s)"),
        IndexError("list index out of range"),
        RuntimeError("mat1 and mat2 shapes cannot be multiplied"),
        ZeroDivisionError("division by zero"),
        OSError(errno.EIO, "Input/output error"),
        OSError("no errno at all"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_bug_propagates(monkeypatch, capsys, error):
    command_raising(monkeypatch, error)
    with pytest.raises(type(error)) as caught:
        main(["info"])
    assert caught.value is error
    assert "error:" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("error", "message"), USER_ERRORS, ids=[type(error).__name__ for error, _ in USER_ERRORS]
)
def test_a_user_error_is_one_line_and_status_2(monkeypatch, capsys, error, message):
    command_raising(monkeypatch, error)
    assert main(["info"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tcm info: error: {message}"), lines


def test_ctrl_c_is_status_130(monkeypatch, capsys):
    command_raising(monkeypatch, KeyboardInterrupt())
    assert main(["info"]) == 130
    assert capsys.readouterr().err.strip() == "tcm info: interrupted"


def test_a_bug_in_a_command_prints_its_traceback():
    script = (
        "import sys\n"
        "import tcm.cli.info\n"
        "def run(args):\n"
        "    return {}['num_segments']\n"
        "tcm.cli.info.run = run\n"
        "from tcm.cli.main import main\n"
        "sys.exit(main(['info']))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.strip().endswith("KeyError: 'num_segments'")
    assert "tcm info: error" not in done.stderr
