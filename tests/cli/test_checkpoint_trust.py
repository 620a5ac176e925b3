"""A checkpoint never makes tcm import a module, call a function, or read a file or URL that
it names; a model on the user's own backbone loads once its module is allowed."""

from __future__ import annotations

import http.server
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import ClassVar

import pytest
import torch

import tcm
from tcm.checkpoint import atomic_save, make_checkpoint
from tcm.cli.main import main
from tcm.errors import ImportNotAllowedError
from tiny_set import tiny_config
from video_files import write_moving_square

COMMANDS = ("predict", "test", "export", "visualize")
TINY_KWARGS = {"widths": [8, 16, 32, 64], "stem_width": 8, "patch_size": 5}


def crafted(path: Path, name: str, **kwargs) -> Path:
    """A checkpoint whose model is ``name`` with ``kwargs``, and no weights."""
    checkpoint = make_checkpoint(
        {}, model_name=name, num_classes=2, num_segments=4, model_kwargs=kwargs, classes=["a", "b"]
    )
    return atomic_save(checkpoint, path)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_moving_square(tmp_path_factory.mktemp("clip") / "clip.mp4")


def run_command(command: str, checkpoint: Path, clip: Path, tiny_set, tmp_path, *extra) -> int:
    """``tcm COMMAND`` on ``checkpoint``, in this process."""
    if command == "predict":
        argv = ["predict", str(clip), "--checkpoint", str(checkpoint)]
    elif command == "export":
        argv = ["export", "--checkpoint", str(checkpoint), "--format", "torchscript"]
        argv += ["--out", str(tmp_path / "m.pt")]
    elif command == "visualize":
        argv = ["visualize", str(clip), "--checkpoint", str(checkpoint)]
        argv += ["--out", str(tmp_path / "fields.png")]
    else:
        config = tmp_path / "tiny.yaml"
        config.write_text(tiny_config(tiny_set).to_yaml())
        argv = ["test", str(config), "--checkpoint", str(checkpoint), "--no-progress"]
        argv += ["--out", str(tmp_path / "test_out")]
    return main([*argv, *extra])


@pytest.mark.parametrize("command", COMMANDS)
def test_a_checkpoint_naming_yaml_unsafe_load_runs_nothing(
    command, clip, tiny_set, tmp_path, capsys
):
    marker = tmp_path / "pwned"
    stream = f"!!python/object/apply:os.system ['touch {marker}']"
    checkpoint = crafted(
        tmp_path / "model.pt", "yaml:unsafe_load", backbone_kwargs={"stream": stream}
    )
    assert run_command(command, checkpoint, clip, tiny_set, tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "yaml:unsafe_load" in err[0] and "--allow-module yaml" in err[0]
    assert "nothing was imported" in err[0]
    assert not marker.exists()


def test_torch_save_and_tcm_main_are_not_called(clip, tmp_path, capsys):
    target = tmp_path / "written_by_checkpoint.pth"
    save = crafted(tmp_path / "save.pt", "torch:save", backbone_kwargs={"obj": 1, "f": str(target)})
    out = tmp_path / "synth_by_checkpoint"
    argv = ["synth", "--out", str(out)]
    run = crafted(tmp_path / "run.pt", "tcm.cli.main:main", backbone_kwargs={"argv": argv})
    for checkpoint in (save, run):
        assert main(["predict", str(clip), "--checkpoint", str(checkpoint)]) == 2
        assert "--allow-module" in capsys.readouterr().err
    assert not target.exists() and not out.exists()
    # Even allowed, tcm's own functions are not backbones.
    with pytest.raises(ValueError, match="a function of tcm itself"):
        tcm.model_from_checkpoint(run, allow_modules=["tcm"])
    assert not out.exists()


def test_a_package_beside_the_checkpoint_is_not_imported_under_python_m(clip, tmp_path):
    """``python -m tcm.cli.main`` (the torchrun form) puts the current folder on sys.path."""
    marker = tmp_path / "imported"
    package = tmp_path / "nets"
    package.mkdir()
    (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    crafted(tmp_path / "model.pt", "nets:Net")
    done = subprocess.run(
        [sys.executable, "-m", "tcm.cli.main", "predict", str(clip), "--checkpoint", "model.pt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "--allow-module nets" in done.stderr
    assert not marker.exists()


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self):
        type(self).requests.append(self.path)
        self.send_error(404)

    def log_message(self, *args):
        pass


def test_pretrained_in_a_checkpoint_is_neither_fetched_nor_read(clip, tmp_path, caplog):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/weights.pth"
        for source in (url, str(tmp_path / "no_such_weights.pth")):
            kwargs = {**TINY_KWARGS, "pretrained": source}
            model = tcm.create_model("tcm_tsm_resnet10", 2, 4, **TINY_KWARGS)
            checkpoint = make_checkpoint(
                model.state_dict(),
                model_name="tcm_tsm_resnet10",
                num_classes=2,
                num_segments=4,
                model_kwargs=kwargs,
            )
            path = atomic_save(checkpoint, tmp_path / "with_pretrained.pt")
            assert main(["predict", str(clip), "--checkpoint", str(path), "--no-progress"]) == 0
            assert "'pretrained' ignored" in caplog.text
    finally:
        server.shutdown()
    assert _Recorder.requests == []


def test_malformed_model_entries_are_named(tmp_path):
    cases = {
        "num_classes": ({"num_classes": "2"}, "model.num_classes must be a positive integer"),
        "kwargs": ({"kwargs": {"widths": torch.ones(2)}}, "model.kwargs must be plain options"),
        "name": ({"name": "no_such_model"}, "unknown model 'no_such_model'"),
    }
    for label, (change, message) in cases.items():
        checkpoint = make_checkpoint({}, model_name="tsn_resnet18", num_classes=2, num_segments=4)
        checkpoint["model"].update(change)
        path = atomic_save(checkpoint, tmp_path / f"{label}.pt")
        with pytest.raises(ValueError, match=message) as error:
            tcm.model_from_checkpoint(path)
        assert str(path) in str(error.value)


BACKBONE = """
from torch import nn


class TinyCNN(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU())

    def forward(self, x):
        return self.block2(self.block1(x))
"""


def test_a_custom_backbone_loads_once_its_module_is_allowed(clip, tmp_path, monkeypatch, capsys):
    package = tmp_path / "trusted_nets"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "small.py").write_text(textwrap.dedent(BACKBONE))
    monkeypatch.syspath_prepend(str(tmp_path))
    name = "trusted_nets.small:TinyCNN"
    kwargs = {"backbone_kwargs": {"width": 8}, "tcm_stages": ["block1"], "patch_size": 5}
    model = tcm.create_model(name, num_classes=2, num_segments=4, **kwargs)
    checkpoint = atomic_save(
        make_checkpoint(
            model.state_dict(), model_name=name, num_classes=2, num_segments=4, model_kwargs=kwargs
        ),
        tmp_path / "custom.pt",
    )
    sys.modules.pop("trusted_nets.small", None)
    with pytest.raises(ImportNotAllowedError, match=r"--allow-module trusted_nets\.small"):
        tcm.Predictor(checkpoint)
    assert "trusted_nets.small" not in sys.modules
    for allowed in ("trusted_nets.small", "trusted_nets"):
        loaded, _ = tcm.model_from_checkpoint(checkpoint, allow_modules=[allowed])
        assert torch.equal(loaded.fc.weight, model.fc.weight)
    argv = ["predict", str(clip), "--checkpoint", str(checkpoint), "--no-progress"]
    assert main([*argv, "--allow-module", "trusted_nets.small"]) == 0
    assert clip.name in capsys.readouterr().out
