"""Helpers of the deployment tests: small random TCM checkpoints.

A module of its own (not ``conftest``) so that tests import it by a name no other test folder
uses."""

from __future__ import annotations

import torch

import tcm
from tcm.checkpoint import make_checkpoint
from tcm.utils.imagenet import IMAGENET_MEAN, IMAGENET_STD

MEAN, STD = list(IMAGENET_MEAN), list(IMAGENET_STD)
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
