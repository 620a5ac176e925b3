"""Helpers of the deployment tests: small random TCM checkpoints, and videos damaged in place.

A module of its own (not ``conftest``) so that tests import it by a name no other test folder
uses."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch

import tcm
from tcm.checkpoint import make_checkpoint

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CLASSES = ["pushing", "pulling", "waving"]
# A small TSM + TCM model: 4 frames of 64x64, TCM after layer2 (8x8 features, stride 8).
TINY = {
    "name": "tcm_tsm_resnet10",
    "kwargs": {"widths": [8, 16, 32, 64], "stem_width": 8, "patch_size": 7},
    "num_segments": 4,
}


def tiny_checkpoint(
    *, data: dict | None = None, classes=CLASSES, fc_std: float = 1.0, seed: int = 0
) -> dict:
    """A randomly initialised tiny TCM checkpoint; ``fc_std`` makes logits of order 1-10 so
    that parity checks are meaningful."""
    torch.manual_seed(seed)
    model = tcm.create_model(
        TINY["name"], len(CLASSES), TINY["num_segments"], **TINY["kwargs"]
    ).eval()
    torch.nn.init.normal_(model.fc.weight, std=fc_std)
    if data is None:
        data = {
            "num_segments": TINY["num_segments"],
            "sampling": "segments",
            "resize": [72, 96],
            "input_size": 64,
            "mean": MEAN,
            "std": STD,
        }
    return make_checkpoint(
        model.state_dict(),
        model_name=TINY["name"],
        num_classes=len(CLASSES),
        num_segments=TINY["num_segments"],
        model_kwargs=TINY["kwargs"],
        classes=classes,
        data=data,
    )


def corrupt_packets(path: Path, start: float, end: float, seed: int = 0) -> Path:
    """Overwrite, in place, the packets of the frames shown in ``[start, end)`` seconds with
    noise: the container stays readable, those frames do not decode."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        spans = [
            (packet.pos, packet.size)
            for packet in container.demux(stream)
            if packet.size and start <= float(packet.pts * packet.time_base) < end
        ]
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for position, size in spans:
        data[position : position + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path
