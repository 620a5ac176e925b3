"""Do TCM's displacement fields measure the motion? Field at the actor vs its true displacement.

On clips of the synthetic tempo set, whose actor's path is known exactly, the script reads
MTDM's fast-tempo field ``(u, v)`` at the cell under the actor in each sampled frame, converts
it to pixels (``u * radius * stride``) and compares it with the actor's true displacement to
the next sampled frame. It prints, for each model, the correlation between true and measured
speed and the mean cosine between true and measured direction (1: the fields point the right
way). Models: TSM + TCM at initialisation (TCM after layer1 or layer2), the same with the
demo's still-image trunk, and any trained checkpoints given.

Usage::

    python benchmarks/bench_tempo_fields.py [--checkpoints runs/demo/runs/tcm/last.pt ...]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

import tcm
from tcm.data.synth import CLASS_SPECS, clip_rng, render_clip
from tcm.deploy.predictor import Predictor
from tcm.layers import MTDM
from tcm.models import IMAGENET_MEAN, IMAGENET_STD
from tcm.recipes.stills import pretrain_trunk
from tcm.recipes.tempo import TempoSettings, stills_config

CLASSES = (
    "moving right",
    "moving down",
    "moving slowly",
    "moving at medium speed",
    "moving quickly",
)


def fast_fields(model: torch.nn.Module, clip: np.ndarray) -> tuple[torch.Tensor, int]:
    """MTDM's output ``(T, 6, h, w)`` for one clip ``(T, S, S, 3)`` uint8, and its radius."""
    layer = next(m for m in model.modules() if isinstance(m, MTDM))
    captured = {}
    hook = layer.register_forward_hook(lambda module, args, out: captured.setdefault("out", out))
    x = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 255  # (T, 3, S, S)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        model(((x - mean) / std)[None])
    hook.remove()
    return captured["out"], layer.patch_size // 2


def field_agreement(model: torch.nn.Module, settings: TempoSettings, clips: int) -> tuple:
    """(correlation of speeds, mean cosine of directions) over ``clips`` clips per class."""
    model.eval()
    frames, size, segments = 16, settings.size, settings.num_segments
    step = frames // segments
    true_speed, measured_speed, cosines = [], [], []
    for name in CLASSES:
        for index in range(clips):
            track = CLASS_SPECS[name].track(clip_rng(99, name, index), frames, size)
            video = render_clip(name, clip_rng(99, name, index), size=size, frames=frames)
            picked = np.arange(segments) * step + step // 2  # centre frame of each segment
            fields, radius = fast_fields(model, video[picked])
            cells = fields.shape[-1]
            stride = size / cells
            centres = track.centre[picked]
            for t in range(segments - 1):
                cx, cy = np.clip((centres[t] / stride).astype(int), 0, cells - 1)
                measured = fields[t, :2, cy, cx].numpy() * radius * stride  # (dx, dy) pixels
                true = centres[t + 1] - centres[t]
                true_speed.append(np.linalg.norm(true))
                measured_speed.append(np.linalg.norm(measured))
                cosines.append(
                    true @ measured / (np.linalg.norm(true) * np.linalg.norm(measured) + 1e-9)
                )
    return float(np.corrcoef(true_speed, measured_speed)[0, 1]), float(np.mean(cosines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", nargs="*", default=[], type=Path)
    parser.add_argument("--clips", type=int, default=12, help="clips per class")
    args = parser.parse_args()
    torch.manual_seed(0)
    settings = TempoSettings()
    with tempfile.TemporaryDirectory() as scratch:
        trunk = pretrain_trunk(Path(scratch), stills_config(settings))
        models = {}
        for stage in ("layer1", "layer2"):
            for init, pretrained in (("random init", None), ("still-image trunk", str(trunk))):
                models[f"TSM + TCM after {stage}, {init}"] = tcm.create_model(
                    "tcm_tsm_resnet10",
                    num_classes=11,
                    num_segments=settings.num_segments,
                    widths=settings.widths,
                    stem_width=settings.widths[0],
                    tcm_stages=(stage,),
                    pretrained=pretrained,
                )
        for path in args.checkpoints:
            models[f"trained: {path}"] = Predictor(path).model
        print(f"{'model':60s} {'speed corr':>10s} {'direction cos':>14s}")
        for name, model in models.items():
            speed, direction = field_agreement(model, settings, args.clips)
            print(f"{name:60s} {speed:10.2f} {direction:14.2f}", flush=True)


if __name__ == "__main__":
    main()
