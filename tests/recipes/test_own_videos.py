"""The tutorial docs/own_videos.md, end to end on generated class folders: ``tcm prepare
folder``, ``tcm train finetune_tcm_tsm_mnv2_8f`` from a backbone file in the TSM release's
layout, ``tcm export`` and ``tcm predict`` on the exported model (a tiny model and small
sizes, so that it runs in seconds)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

import tcm
from tcm.cli.main import main
from tcm.data.annotations import read_classes
from tcm.engine.config_files import load_config
from tcm.models.plugin import TCM_CONTAINER
from video_files import write_class_clip

DOC = Path(__file__).parents[2] / "docs" / "own_videos.md"
CLASSES = ("down", "left", "right")  # labels 2, 1, 0 of write_class_clip, sorted by name
CLIP_CLASS = {"right": 0, "left": 1, "down": 2}
TINY_MODEL = ["widths: [8, 16, 32, 64]", "stem_width: 8", "patch_size: 5"]


def release_file(path: Path, kwargs: dict) -> Path:
    """A Kinetics checkpoint as the TSM release lays it out (``module.base_model.*``, a
    400-class ``new_fc``), of the tiny backbone."""
    model = tcm.create_model("tcm_tsm_resnet10", 400, 4, **kwargs)
    state = {
        f"module.base_model.{key}": value
        for key, value in model.backbone.state_dict().items()
        if not key.startswith(f"{TCM_CONTAINER}.")
    }
    state["module.new_fc.weight"] = torch.randn(400, 64)
    state["module.new_fc.bias"] = torch.zeros(400)
    torch.save({"epoch": 50, "arch": "resnet10", "state_dict": state}, path)
    return path


def test_recipes_take_the_classes_from_the_lists():
    for name in ("finetune_tcm_tsm_mnv2_8f", "finetune_tcm_tsm_r50_8f"):
        cfg = load_config(name)
        assert cfg.model.num_classes is None and cfg.data.classes == "lists/classes.txt"
        assert cfg.model.pretrained.startswith("TSM_kinetics_RGB_") and cfg.model.init_from is None
        assert (cfg.optim.lr, cfg.optim.base_batch_size, cfg.optim.clip_grad_norm) == (
            0.001,
            64,
            20,
        )
        assert (cfg.schedule.epochs, cfg.schedule.milestones) == (25, [10, 20])
        assert (cfg.model.dropout, cfg.model.freeze_bn, cfg.optim.head_lr_mult) == (
            0.8,
            "partial",
            5,
        )


def test_tutorial_commands_run_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the recipe's default paths: clips/ and lists/
    for name in CLASSES:
        (tmp_path / "clips" / name).mkdir(parents=True)
        for k in range(5):
            write_class_clip(tmp_path / "clips" / name / f"{name}_{k}.mp4", CLIP_CLASS[name], k)
    (tmp_path / "clips" / "left" / "README.txt").write_text("not a clip")
    kwargs = {"widths": [8, 16, 32, 64], "stem_width": 8, "patch_size": 5}
    zoo = release_file(tmp_path / "zoo.pth", kwargs)
    assert "tcm prepare folder --root clips --out lists" in DOC.read_text()

    assert main(["prepare", "folder", "--root", "clips", "--out", "lists"]) == 0
    assert "left/README.txt" in capsys.readouterr().out
    assert read_classes("lists/classes.txt") == list(CLASSES)

    small = {
        "model.name": "tcm_tsm_resnet10",
        "model.num_segments": 4,
        "model.kwargs": json.dumps(kwargs),
        "model.pretrained": str(zoo),
        "data.input_size": 32,
        "data.resize": "[36, 44]",
        "data.batch_size": 4,
        "data.num_workers": 0,
        "optim.base_batch_size": "null",
        "optim.lr": 0.02,
        "schedule.epochs": 2,
        "schedule.milestones": "[1]",
        "train.device": "cpu",
        "train.tensorboard": "false",
    }
    sets = [f"{key}={value}" for key, value in small.items()]
    argv = ["train", "finetune_tcm_tsm_mnv2_8f", "--work-dir", "run", "--no-progress"]
    assert main(argv + [arg for s in sets for arg in ("--set", s)]) == 0
    checkpoint = tmp_path / "run" / "best.pt"
    assert checkpoint.is_file()

    assert (
        main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--out", "model.onnx"])
        == 0
    )
    capsys.readouterr()
    clip = "clips/left/left_0.mp4"
    assert main(["predict", clip, "--checkpoint", "model.onnx", "--json", "--topk", "3"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    top = json.loads(line)["top"]
    assert sorted(score["label"] for score in top) == sorted(CLASSES)
    assert re.search(r"tcm predict .*--checkpoint model\.onnx", DOC.read_text())
