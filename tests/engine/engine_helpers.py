"""Helpers of the engine tests: a tiny labelled video set and a tiny model config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from tcm.engine.config import TrainConfig

NUM_CLASSES = 3
# Class c: a bright square of colour COLOURS[c] moving along DIRECTIONS[c] over a grey field.
COLOURS = ((230, 40, 40), (40, 230, 40), (40, 40, 230))
DIRECTIONS = ((1, 0), (-1, 0), (0, 1))


def write_clip(path: Path, label: int, seed: int, num_frames: int = 12, size=(40, 48)) -> None:
    """A small H.264 video of class ``label`` (colour and motion tell the classes apart)."""
    rng = np.random.default_rng(seed)
    height, width = size
    y, x = int(rng.integers(8, height - 16)), int(rng.integers(8, width - 16))
    dy, dx = DIRECTIONS[label]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        for t in range(num_frames):
            image = np.full((height, width, 3), 110 + int(rng.integers(0, 20)), dtype=np.uint8)
            top = min(max(y + dy * t, 0), height - 10)
            left = min(max(x + dx * t, 0), width - 10)
            image[top : top + 10, left : left + 10] = COLOURS[label]
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@dataclass(frozen=True)
class TinySet:
    root: Path
    train_list: Path
    val_list: Path
    classes: Path


def make_tiny_set(folder: Path, train_per_class: int = 4, val_per_class: int = 2) -> TinySet:
    folder.mkdir(parents=True, exist_ok=True)
    videos = folder / "videos"
    videos.mkdir(exist_ok=True)
    lines = {"train": [], "val": []}
    seed = 0
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for label in range(NUM_CLASSES):
            for k in range(per_class):
                name = f"{split}_{label}_{k}.mp4"
                write_clip(videos / name, label, seed)
                seed += 1
                lines[split].append(f"{name} {label}")
    (folder / "train.txt").write_text("\n".join(lines["train"]) + "\n")
    (folder / "val.txt").write_text("\n".join(lines["val"]) + "\n")
    (folder / "classes.txt").write_text("red right\ngreen left\nblue down\n")
    return TinySet(videos, folder / "train.txt", folder / "val.txt", folder / "classes.txt")


def tiny_config(data: TinySet, **overrides) -> TrainConfig:
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
    return TrainConfig.from_dict(base).replace(overrides)
