"""The visual-tempo comparison: TSN, TSM and TCM on both, trained on a generated set, on the CPU.

The data set (:mod:`tcm.data.synth`) has classes that differ only in how things move:
direction, tempo and temporal order. No single frame tells them apart, so a model without
temporal modelling (TSN) stays at chance within each group, while TSM and TCM can learn them.
Every variant starts from the same trunk, pretrained on generated still images
(:mod:`tcm.recipes.stills`), as the paper's start from ImageNet.

Every run of :func:`run_tempo_comparison` writes under one folder::

    data/             the generated videos and lists (reused when the same settings exist)
    stills/           the pretrained trunk (reused likewise)
    runs/<variant>/   each model's training run (metrics.jsonl, last.pt, best.pt, curves.png)
    results.json      top-1 overall and per group for every variant
    results.md        the same as a table
    curves.png        validation top-1 and training loss per epoch, all variants
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tcm.data.annotations import read_classes
from tcm.data.synth import SynthConfig, read_groups, write_synth_dataset
from tcm.engine import (
    DataConfig,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    ScheduleConfig,
    TrainLoopConfig,
    evaluate,
    train,
)
from tcm.engine.workdir import WorkDirLock
from tcm.ops.backend import extension_available
from tcm.recipes.stills import StillsConfig, pretrain_trunk
from tcm.utils.parallel import map_in_processes

logger = logging.getLogger(__name__)

# Variant -> registered model.
VARIANTS = {
    "tsn": "tsn_resnet10",
    "tcm_tsn": "tcm_tsn_resnet10",
    "tsm": "tsm_resnet10",
    "tcm": "tcm_tsm_resnet10",
}
TCM_VARIANTS = frozenset({"tcm_tsn", "tcm"})


@dataclass
class TempoSettings:
    """Settings of the comparison; the defaults fit a 2-core CPU in a few minutes.

    Attributes:
        seed: seed of the data set and of every training run.
        clips_per_class: generated clips per class, split into train, val and test.
        val_fraction: share of each class's clips in the validation split (the one reported).
        test_fraction: share in the test split (the demo's held-out examples).
        size: side of the generated frames and of the network input, in pixels.
        frames: frames per generated video.
        num_segments: frames sampled per clip (``T``).
        widths: stage widths of the small ResNet-10 shared by all variants.
        epochs: training epochs per variant.
        eval_interval: validate every this many epochs (and after the last).
        batch_size: clips per step.
        lr: learning rate (SGD, cosine schedule with one warm-up epoch).
        tcm_stages: where TCM goes in the TCM variants.
        tcm_options: further TCM options (``patch_size``, ``reduced_channels``, ...) of the
            TCM variants, the same for both.
        pretrain: initialise every variant's trunk with still-image pretraining
            (:mod:`tcm.recipes.stills`), as the paper starts from ImageNet.
        stills: options of that pretraining (:class:`tcm.recipes.stills.StillsConfig`).
        variants: which variants to train, in order.
        num_workers: data loader processes (when variants train one at a time).
        jobs: variants trained at once, each in its own process on one thread with data
            loading in process; 1: one at a time on every thread. At this model size one
            thread does nearly as much as two, so two jobs on two cores take about half the
            time. A variant's ``train_seconds`` is then measured beside another run.
        extra_model_kwargs: options passed to every variant's model.
    """

    seed: int = 0
    clips_per_class: int = 120
    val_fraction: float = 0.4
    test_fraction: float = 0.1
    size: int = 64
    frames: int = 16
    num_segments: int = 8
    widths: tuple[int, int, int, int] = (16, 32, 64, 128)
    epochs: int = 15
    eval_interval: int = 5
    batch_size: int = 16
    lr: float = 0.05
    tcm_stages: tuple[str, ...] = ("layer2",)
    tcm_options: dict[str, Any] = field(default_factory=dict)
    pretrain: bool = True
    stills: dict[str, Any] = field(default_factory=dict)
    variants: tuple[str, ...] = ("tsn", "tcm_tsn", "tsm", "tcm")
    num_workers: int = 2
    jobs: int = 2
    extra_model_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class VariantResult:
    """Accuracies (percent) of one trained variant on the validation split."""

    variant: str
    model: str
    top1: float
    groups: dict[str, float]
    train_seconds: float
    checkpoint: str
    history: list[dict[str, Any]]


def generate_data(root: Path, settings: TempoSettings, progress: bool = True) -> Path:
    """Write the data set under ``root`` unless the same settings already produced it."""
    config = SynthConfig(
        clips_per_class=settings.clips_per_class,
        val_fraction=settings.val_fraction,
        test_fraction=settings.test_fraction,
        size=settings.size,
        frames=settings.frames,
        seed=settings.seed,
    )
    stamp = root / "synth.json"
    if stamp.is_file() and (root / "val.txt").is_file():
        written = json.loads(stamp.read_text())
        wanted = {k: v for k, v in asdict(config).items() if k in written}
        if all(written[k] == (list(v) if isinstance(v, tuple) else v) for k, v in wanted.items()):
            logger.info("reusing the data set in %s", root)
            return root
    write_synth_dataset(root, config, progress=progress)
    return root


def stills_config(settings: TempoSettings) -> StillsConfig:
    """The still-image pretraining of the comparison's trunk."""
    return StillsConfig(
        widths=tuple(settings.widths),
        stem_width=settings.widths[0],
        size=settings.size,
        seed=settings.seed,
        **settings.stills,
    )


def pretrain(out: Path, settings: TempoSettings, progress: bool = True) -> Path | None:
    """The trunk weights every variant starts from (cached under ``out``), or None."""
    if not settings.pretrain:
        return None
    return pretrain_trunk(out, stills_config(settings), progress=progress)


def variant_config(
    variant: str, data_root: Path, settings: TempoSettings, trunk: Path | None = None
) -> RunConfig:
    """The training config of one variant: same data, schedule, trunk and init for all."""
    kwargs: dict[str, Any] = {"widths": list(settings.widths), "stem_width": settings.widths[0]}
    if variant in TCM_VARIANTS:
        kwargs["tcm_stages"] = list(settings.tcm_stages)
        kwargs.update(settings.tcm_options)
    kwargs.update(settings.extra_model_kwargs)
    return RunConfig(
        name=f"tempo_{variant}",
        model=ModelConfig(
            name=VARIANTS[variant],
            num_segments=settings.num_segments,
            dropout=0.2,
            pretrained=None if trunk is None else str(trunk),
            kwargs=kwargs,
        ),
        data=DataConfig(
            root=str(data_root),
            train_list=str(data_root / "train.txt"),
            val_list=str(data_root / "val.txt"),
            classes=str(data_root / "classes.txt"),
            input_size=settings.size,
            resize=settings.size,
            scales=[1.0, 0.875],
            # Mirroring a clip turns "moving left" into "moving right": no flips here.
            flip=False,
            batch_size=settings.batch_size,
            num_workers=settings.num_workers,
        ),
        optim=OptimConfig(lr=settings.lr, base_batch_size=None, weight_decay=1e-4),
        schedule=ScheduleConfig(epochs=settings.epochs, type="cosine", warmup_epochs=1),
        train=TrainLoopConfig(
            seed=settings.seed,
            device="cpu",
            tensorboard=False,
            eval_interval=settings.eval_interval,
        ),
        eval=EvalConfig(batch_size=settings.batch_size),
    )


def group_accuracy(scores: np.ndarray, labels: np.ndarray, classes, groups) -> dict[str, float]:
    """Top-1 (percent, argmax over all classes) of the videos of each group."""
    predicted = scores.argmax(axis=1)
    label_groups = np.array([groups[classes[label]] for label in labels])
    return {
        group: float(
            100.0 * (predicted[label_groups == group] == labels[label_groups == group]).mean()
        )
        for group in dict.fromkeys(groups[name] for name in classes)
    }


def train_variant(
    variant: str,
    data_root: Path,
    work_dir: Path,
    settings: TempoSettings,
    trunk: Path | None = None,
    progress: bool = True,
) -> VariantResult:
    """Train one variant in ``work_dir`` and score its final weights on val.

    ``trunk``: weights the trunk starts from (see :func:`pretrain`); None: from scratch.
    """
    if work_dir.exists():
        shutil.rmtree(work_dir)  # a fresh run each time: the table compares equal budgets
    started = time.perf_counter()
    config = variant_config(variant, data_root, settings, trunk)
    run = train(config, work_dir, progress=progress)
    seconds = time.perf_counter() - started
    scores = evaluate(run.checkpoint, data_root / "val.txt", data_root, batch_size=16)
    classes = read_classes(data_root / "classes.txt")
    groups = read_groups(data_root / "groups.json")
    return VariantResult(
        variant=variant,
        model=VARIANTS[variant],
        top1=float(scores.top1),
        groups=group_accuracy(scores.scores, scores.labels, classes, groups),
        train_seconds=seconds,
        checkpoint=str(run.checkpoint),
        history=[row for row in run.history if row.get("kind", "epoch") == "epoch"],
    )


def run_variant_job(job: tuple[str, Path, Path, TempoSettings, Path | None]) -> VariantResult:
    """:func:`train_variant` in a worker process: one thread, data loading in process."""
    variant, data_root, work_dir, settings, trunk = job
    torch.set_num_threads(1)
    return train_variant(
        variant, data_root, work_dir, replace(settings, num_workers=0), trunk, progress=False
    )


def train_variants(
    jobs: list[tuple[str, Path, Path, TempoSettings, Path | None]],
    workers: int,
    progress: bool = True,
) -> list[VariantResult]:
    """Run ``(variant, data_root, work_dir, settings, trunk)`` jobs, ``workers`` at a time.

    With one worker the runs go one after the other in this process (all threads, the
    settings' loader workers, progress bars per epoch); otherwise see
    :func:`run_variant_job`. Results come in the order of ``jobs``.
    """
    if workers <= 1:
        return [train_variant(*job, progress=progress) for job in jobs]
    if any(job[0] in TCM_VARIANTS for job in jobs):
        # Build the C++ kernels here, once: otherwise every TCM job compiles them at the same
        # time, inside its timed training.
        extension_available()
    # TCM runs take longest: start them first so the pool ends together.
    order = sorted(range(len(jobs)), key=lambda i: jobs[i][0] not in TCM_VARIANTS)
    done = map_in_processes(
        run_variant_job,
        [jobs[i] for i in order],
        workers=workers,
        progress=progress,
        desc="training",
        unit="run",
        chunksize=1,
    )
    results: list[VariantResult | None] = [None] * len(jobs)
    for index, result in zip(order, done):
        results[index] = result
    return results


def run_tempo_comparison(
    out: str | os.PathLike, settings: TempoSettings | None = None, progress: bool = True
) -> list[VariantResult]:
    """Generate the data, train and evaluate every variant, write the report under ``out``."""
    settings = settings or TempoSettings()
    out = Path(out)
    # One comparison per folder: a second one would delete the first's runs as it starts.
    with WorkDirLock(out):
        return _run_comparison(out, settings, progress)


def _run_comparison(out: Path, settings: TempoSettings, progress: bool) -> list[VariantResult]:
    data_root = generate_data(out / "data", settings, progress)
    trunk = pretrain(out / "stills", settings, progress)
    jobs = [
        (variant, data_root, out / "runs" / variant, settings, trunk)
        for variant in settings.variants
    ]
    results = train_variants(jobs, min(settings.jobs, len(jobs)), progress)
    write_report(
        out,
        results,
        read_classes(data_root / "classes.txt"),
        read_groups(data_root / "groups.json"),
        settings,
    )
    return results


def chance_levels(classes, groups) -> dict[str, float]:
    """Top-1 (percent) of a model that knows the group but guesses the class within it."""
    sizes: dict[str, int] = {}
    for name in classes:
        sizes[groups[name]] = sizes.get(groups[name], 0) + 1
    return {group: 100.0 / size for group, size in sizes.items()}


def format_table(results: list[VariantResult], chance: dict[str, float]) -> str:
    """Markdown table: one row per variant, top-1 overall and per group."""
    group_names = list(chance)
    header = "| model | top-1 | " + " | ".join(group_names) + " | train time |"
    rule = "|---|---:|" + "---:|" * len(group_names) + "---:|"
    rows = [header, rule]
    for result in results:
        cells = " | ".join(f"{result.groups[g]:.1f}" for g in group_names)
        rows.append(
            f"| {result.variant} ({result.model}) | {result.top1:.1f} | {cells} | "
            f"{result.train_seconds:.0f} s |"
        )
    cells = " | ".join(f"{chance[g]:.1f}" for g in group_names)
    rows.append(f"| chance within group | | {cells} | |")
    return "\n".join(rows)


def write_report(out: Path, results, classes, groups, settings: TempoSettings) -> None:
    chance = chance_levels(classes, groups)
    (out / "results.md").write_text(format_table(results, chance) + "\n")
    (out / "results.json").write_text(
        json.dumps(
            {
                "settings": asdict(settings),
                "chance_within_group": chance,
                "results": [asdict(r) for r in results],
            },
            indent=2,
        )
    )
    plot_comparison(results, out / "curves.png")


def plot_comparison(results: list[VariantResult], path: Path) -> Path:
    """Validation top-1 and training loss per epoch, one line per variant."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figure, (acc_axis, loss_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for result in results:
        rows = result.history
        epochs = [row["epoch"] for row in rows if "val_top1" in row]
        acc_axis.plot(
            epochs,
            [row["val_top1"] for row in rows if "val_top1" in row],
            label=result.variant,
            marker="o",
        )
        epochs = [row["epoch"] for row in rows if "train_loss" in row]
        loss_axis.plot(
            epochs, [row["train_loss"] for row in rows if "train_loss" in row], label=result.variant
        )
    acc_axis.set(title="validation top-1 (%)", xlabel="epoch")
    loss_axis.set(title="training loss", xlabel="epoch")
    for axis in (acc_axis, loss_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
