"""Still-image pretraining of the 2D trunk: the demo's stand-in for ImageNet initialisation.

The paper's models start from ImageNet weights, so TCM correlates meaningful low-level features
from the first step. The demo cannot download ImageNet weights, so it makes its own: single
frames rendered by the synthetic generator (:mod:`tcm.data.synth`), labelled with the shape of
their actor, train a TSN ResNet with one segment for a few epochs. A still carries nothing of
the motion classes (the generator makes every class's frames alike), so this teaches edges,
textures and shapes, not the answer. The trunk's weights, in the common ImageNet layout, then
initialise every variant alike through ``pretrained=``.

Example::

    path = pretrain_trunk("runs/demo/stills", StillsConfig(widths=(16, 32, 64, 128)))
    model = tcm.create_model("tcm_tsm_resnet10", num_classes=13, widths=..., pretrained=path)
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tcm.checkpoint import atomic_save
from tcm.data.synth import CLASS_SPECS, SHAPES, clip_rng, random_look, render_clip
from tcm.models import IMAGENET_MEAN, IMAGENET_STD, create_model
from tcm.utils.parallel import map_in_processes

logger = logging.getLogger(__name__)

#: Added to the seed so the stills never repeat a clip of the data set generated with it.
STILLS_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class StillsConfig:
    """What :func:`pretrain_trunk` trains.

    Attributes:
        widths: stage widths of the ResNet-10 trunk (as the variants use).
        stem_width: channels of the stem.
        size: image side in pixels.
        images: rendered stills.
        epochs: passes over them (random crop and flip each time).
        batch_size: images per step.
        lr: SGD learning rate (cosine to zero, momentum 0.9).
        seed: seed of the stills and of the training.
    """

    widths: tuple[int, ...] = (16, 32, 64, 128)
    stem_width: int = 16
    size: int = 64
    images: int = 6000
    epochs: int = 8
    batch_size: int = 64
    lr: float = 0.05
    seed: int = 0


def _render_still(job: tuple[int, int, int]) -> tuple[np.ndarray, int]:
    """One ``(S, S, 3)`` uint8 frame of a random class and its actor's shape index."""
    seed, index, size = job
    names = list(CLASS_SPECS)
    name = names[index % len(names)]
    rng = clip_rng(seed + STILLS_SEED_OFFSET, name, index)
    frames = render_clip(name, rng, size=size, frames=2)
    # The actor's look is the generator's second draw, after its track.
    replay = clip_rng(seed + STILLS_SEED_OFFSET, name, index)
    CLASS_SPECS[name].track(replay, 2, size)
    shape = SHAPES.index(random_look(replay).shape)
    return frames[index % 2], shape


def render_stills(config: StillsConfig, workers: int | None = None) -> tuple[torch.Tensor, ...]:
    """``(N, 3, S, S)`` uint8 images and ``(N,)`` shape labels."""
    jobs = [(config.seed, index, config.size) for index in range(config.images)]
    rendered = map_in_processes(
        _render_still, jobs, workers=workers or os.cpu_count() or 1, chunksize=64
    )
    images = torch.from_numpy(np.stack([image for image, _ in rendered])).permute(0, 3, 1, 2)
    labels = torch.tensor([label for _, label in rendered])
    return images.contiguous(), labels


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop after 4-pixel padding and horizontal flip: ``(B, 3, S, S)`` float."""
    count, _, size, _ = images.shape
    padded = F.pad(images, (4, 4, 4, 4), mode="replicate")
    offsets = torch.randint(0, 9, (count, 2), generator=generator)
    crops = torch.stack(
        [padded[i, :, y : y + size, x : x + size] for i, (y, x) in enumerate(offsets.tolist())]
    )
    flip = torch.rand(count, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], crops.flip(-1), crops)


def _train_on_stills(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: StillsConfig,
    generator: torch.Generator,
    progress: bool,
) -> float:
    """SGD with a cosine schedule over augmented ``images`` (uint8 ``(N, 3, S, S)``); the
    shape accuracy of the last epoch, in percent."""
    steps = config.epochs * (len(images) // config.batch_size)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=0.9, weight_decay=1e-4, nesterov=True
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="still-image pretraining", unit="step")
    model.train()
    correct = seen = 0
    for epoch in range(config.epochs):
        order = torch.randperm(len(images), generator=generator)
        for batch in order[: len(order) // config.batch_size * config.batch_size].split(
            config.batch_size
        ):
            x = (_augment(images[batch].float() / 255, generator) - mean) / std  # (B, 3, S, S)
            logits = model(x[:, None])  # one segment: (B, 1, 3, S, S) -> (B, classes)
            loss = F.cross_entropy(logits, labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if epoch == config.epochs - 1:
                correct += int((logits.argmax(1) == labels[batch]).sum())
                seen += len(batch)
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    return 100.0 * correct / max(seen, 1)


def pretrain_trunk(
    out: str | os.PathLike, config: StillsConfig | None = None, progress: bool = False
) -> Path:
    """Train the trunk on stills and write its weights to ``out/trunk.pth``; cached.

    The file is reused when ``out/stills.json`` records the same config. Returns its path.
    """
    config = config or StillsConfig()
    out = Path(out)
    path, stamp = out / "trunk.pth", out / "stills.json"
    settings = json.loads(json.dumps(asdict(config)))
    if path.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == settings:
        logger.info("reusing the still-image trunk %s", path)
        return path
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    images, labels = render_stills(config)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = create_model(
        "tsn_resnet10",
        num_classes=len(SHAPES),
        num_segments=1,
        dropout=0.0,
        widths=config.widths,
        stem_width=config.stem_width,
    )
    accuracy = _train_on_stills(model, images, labels, config, generator, progress)
    atomic_save(model.backbone.state_dict(), path)
    stamp.write_text(json.dumps(settings, indent=2) + "\n")
    logger.info(
        "still-image trunk: %d images, %d epochs, last-epoch shape accuracy %.1f%%, %.0f s -> %s",
        len(images),
        config.epochs,
        accuracy,
        time.perf_counter() - started,
        path,
    )
    return path


__all__ = ["StillsConfig", "pretrain_trunk", "render_stills"]
