"""A tiny labelled video set (3 classes of :func:`video_files.write_class_clip`) and a tiny
model config that trains on it in seconds, for the engine and command-line tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tcm.engine.config import RunConfig
from video_files import write_class_clip

NUM_CLASSES = 3  # the classes of write_class_clip


@dataclass(frozen=True)
class TinySet:
    """Where the set lies: the video folder, the two list files and the class names."""

    root: Path
    train_list: Path
    val_list: Path
    classes: Path


def make_tiny_set(folder: Path, train_per_class: int = 4, val_per_class: int = 2) -> TinySet:
    """Write the set in ``folder``: ``train_per_class`` and ``val_per_class`` videos of each
    class (12 frames of 40x48), ``train.txt``, ``val.txt`` and ``classes.txt``."""
    folder.mkdir(parents=True, exist_ok=True)
    videos = folder / "videos"
    videos.mkdir(exist_ok=True)
    lines = {"train": [], "val": []}
    seed = 0
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for label in range(NUM_CLASSES):
            for k in range(per_class):
                name = f"{split}_{label}_{k}.mp4"
                write_class_clip(videos / name, label, seed)
                seed += 1
                lines[split].append(f"{name} {label}")
    (folder / "train.txt").write_text("\n".join(lines["train"]) + "\n")
    (folder / "val.txt").write_text("\n".join(lines["val"]) + "\n")
    (folder / "classes.txt").write_text("red right\ngreen left\nblue down\n")
    return TinySet(videos, folder / "train.txt", folder / "val.txt", folder / "classes.txt")


def tiny_config(data: TinySet, **overrides) -> RunConfig:
    """A TCM-TSM-ResNet-10 of widths 8..64 on 4 frames of 32x32, 2 epochs, CPU, no workers."""
    base = {
        "name": "tiny",
        "model": {
            "name": "tcm_tsm_resnet10",
            "num_segments": 4,
            "dropout": 0.0,
            "kwargs": {"widths": [8, 16, 32, 64], "stem_width": 8, "patch_size": 5},
        },
        "data": {
            "root": str(data.root),
            "train_list": str(data.train_list),
            "val_list": str(data.val_list),
            "classes": str(data.classes),
            "input_size": 32,
            "resize": [36, 44],
            "batch_size": 4,
            "num_workers": 0,
        },
        "optim": {"lr": 0.05, "base_batch_size": None, "clip_grad_norm": 20.0},
        "schedule": {"epochs": 2, "type": "cosine", "warmup_epochs": 0.5},
        "train": {"device": "cpu", "tensorboard": False, "log_interval": 1},
        "eval": {"batch_size": 6},
    }
    return RunConfig.from_dict(base).replace(overrides)
