"""The allocator setting: taken by the train and demo commands' own processes, never on import."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys

import pytest

from tcm.cli import main as cli
from tcm.utils import allocator

GLIBC = ctypes.util.find_library("c") is not None and sys.platform.startswith("linux")


def _in_fresh_process(code: str, **env) -> str:
    import os

    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_the_setting_takes_effect_and_can_be_turned_off():
    code = "from tcm.utils.allocator import keep_freed_memory; print(keep_freed_memory())"
    assert _in_fresh_process(code) == "True"
    assert _in_fresh_process(code, TCM_MALLOC="default") == "False"


@pytest.mark.parametrize(
    "argv, applied",
    [
        (["tcm", "train", "cfg.yaml"], True),
        (["tcm", "-v", "demo"], True),
        (["tcm", "predict", "video.mp4"], False),
        (["tcm"], False),
    ],
)
def test_only_the_command_line_of_train_and_demo_sets_it(monkeypatch, argv, applied):
    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr(cli, "main", lambda: 0)
    monkeypatch.setattr(sys, "argv", argv)
    assert cli.run_command_line() == 0
    assert bool(calls) == applied


def test_importing_the_package_and_calling_main_leave_the_allocator(monkeypatch, capsys):
    def refuse():
        raise AssertionError("the host's allocator was changed")

    monkeypatch.setattr(allocator, "keep_freed_memory", refuse)
    assert cli.main(["info", "tsm_resnet10", "--size", "32", "--frames", "2"]) == 0
    assert "tsm_resnet10" in capsys.readouterr().out
