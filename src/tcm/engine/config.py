"""The run configuration: one typed dataclass per section, each default explained.

A config is a :class:`RunConfig` with one section per concern::

    model:    what to build (registered name, classes, frames, dropout, initialisation)
    data:     where the videos are and how clips are sampled and augmented
    optim:    SGD, learning rate (scaled with the global batch), clipping, accumulation
    schedule: epochs, warm-up, step or cosine decay
    train:    seed, device, mixed precision, checkpoint / evaluation / log intervals
    eval:     test views (clips x crops) and batch size
    dist:     backend, SyncBatchNorm

Files and overrides are read by :mod:`tcm.engine.config_files` (:func:`load_config`, with
``_base_`` inheritance and ``--set key.path=value``), every value checked against its field's
type by :mod:`tcm.engine.typed_config`; :mod:`tcm.engine.config_checks` checks a config before
a run (files, ranges, classes).

A config can also be built in Python: ``RunConfig(model=ModelConfig(name="tsm_resnet10"))``.
:meth:`RunConfig.to_dict` gives the plain dict that is saved as ``config.yaml`` in the work
dir and inside every checkpoint; :meth:`RunConfig.from_dict` reads it back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from tcm.data.frame_names import DEFAULT_FRAME_TEMPLATE
from tcm.engine.typed_config import apply_overrides, build_dataclass, to_plain


@dataclass
class ModelConfig:
    """What to build."""

    name: str = "tcm_tsm_resnet50"
    """Registered model name (``tcm info`` lists them), or the import path of a backbone of
    one's own, ``package.module:Name`` (built with ``kwargs.backbone_kwargs``; the temporal
    shift with ``kwargs.temporal_shift: true``, TCM after the layers in ``kwargs.tcm_stages``)."""
    num_classes: int | None = None
    """Number of classes; ``null`` takes the number of names in ``data.classes``."""
    num_segments: int = 8
    """Frames per clip ``T``."""
    dropout: float = 0.5
    """Dropout before the classifier."""
    pretrained: str | None = None
    """Weights for the backbone (path or URL): ImageNet weights (ResNet; MobileNetV2 in the TSM
    release's or torchvision's layout) or a TSM/TCM release checkpoint; TCM and the head start
    fresh. ``null``: random init."""
    init_from: str | None = None
    """A tcm checkpoint to start from (fine-tuning, e.g. UCF-101 from Kinetics-400); its
    classifier is dropped when its class count differs."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Other options of ``create_model`` (``tcm_stages``, ``widths``, ``stem_width``, ...)."""
    freeze_bn: Literal["none", "partial", "all"] = "none"
    """``partial``: every BatchNorm but the first in eval mode with frozen affine parameters
    (TSM's partial BN, for small data sets); ``all``: every BatchNorm."""
    channels_last: bool = False
    """Run convolutions in the channels-last memory format."""


@dataclass
class DataConfig:
    """Where the videos are and how clips are made (see :func:`tcm.data.build_dataset`)."""

    root: str | None = None
    """Folder the list files' paths are relative to."""
    train_list: str | None = None
    """Training list file (``path label`` or ``path num_frames label``)."""
    val_list: str | None = None
    """Validation list file, evaluated during training; ``null``: no evaluation."""
    test_list: str | None = None
    """List used by ``tcm test``; ``null``: ``val_list``."""
    classes: str | None = None
    """``classes.txt`` (one name per line): class names, count and mirror pairs for flips."""
    sampling: Literal["segments", "dense"] = "segments"
    """TSN segment sampling or dense sampling at ``dense_stride``."""
    dense_stride: int = 8
    input_size: int = 224
    """Side of the square network input."""
    resize: int | list[int] | None = field(default_factory=lambda: [240, 320])
    """``[H, W]`` for every frame, an int for the short side, or ``null``."""
    short_side_range: list[int] | None = None
    """Training only: draw the short side per clip in ``[lo, hi]`` (Kinetics recipe)."""
    train_crop: Literal["multiscale", "random"] = "multiscale"
    scales: list[float] = field(default_factory=lambda: [1.0, 0.875, 0.75, 0.66])
    """Scales of the multi-scale crop."""
    flip: bool = True
    """Random horizontal flip (mirror classes swap labels; sided classes are never flipped)."""
    frame_template: str = DEFAULT_FRAME_TEMPLATE
    """File names in frame folders."""
    frame_start_index: int = 1
    bad_sample_policy: Literal["raise", "skip"] = "skip"
    """Unreadable training samples: stop, or log and replace them."""
    batch_size: int = 8
    """Clips per process and per micro-batch; the global batch is
    ``batch_size * world_size * optim.accumulate_steps``."""
    num_workers: int = 4
    """DataLoader worker processes per training process."""
    sharing_strategy: Literal["file_descriptor", "file_system"] = "file_descriptor"
    """How workers hand batches over (torch's sharing strategy): ``file_system`` when a loader
    runs out of file descriptors ("received 0 items of ancdata", "too many open files"). Both
    keep the batches in ``/dev/shm``, which is checked before a run starts."""
    decode_threads: int = 1
    """Decoders per video file, in parallel threads, each taking some of the stretches of a clip
    that start at a key frame; for frame folders, threads decoding a clip's images (0: one per
    CPU core). 1 suits ``num_workers`` at or above the cores; more pays only when the cores
    would otherwise idle, and for videos only for clips that span several key frames."""


@dataclass
class OptimConfig:
    """SGD with parameter groups."""

    lr: float = 0.01
    """Learning rate for a global batch of ``base_batch_size`` clips."""
    base_batch_size: int | None = 32
    """The learning rate is scaled by ``global batch / base_batch_size``; ``null``: as given."""
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = False
    """Also apply weight decay to normalisation parameters and biases."""
    head_lr_mult: float = 1.0
    """Learning-rate multiplier of the classifier (5 when fine-tuning, as TSM's ``fc_lr5``)."""
    clip_grad_norm: float | None = 200.0
    """Clip the global gradient norm to this; ``null``: no clipping."""
    accumulate_steps: int = 1
    """Micro-batches per optimizer step."""


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, updated at every optimizer step."""

    epochs: int = 50
    type: Literal["step", "cosine", "constant"] = "step"
    milestones: list[float] = field(default_factory=lambda: [30, 40, 45])
    """``step``: multiply by ``gamma`` at these epochs."""
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    """Linear warm-up from ``warmup_start_factor * lr`` over this many epochs."""
    warmup_start_factor: float = 0.1
    min_lr_factor: float = 0.0
    """``cosine``: final learning rate as a fraction of the peak."""


@dataclass
class TrainLoopConfig:
    """The training loop."""

    seed: int = 0
    """Seeds weights, shuffling, augmentation and dropout."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto``: CUDA when available."""
    amp: Literal["none", "bf16", "fp16"] = "none"
    """Mixed precision: ``bf16`` (CPU or CUDA) or ``fp16`` with loss scaling (CUDA)."""
    deterministic: bool = False
    """``torch.use_deterministic_algorithms`` (slower on CUDA)."""
    compile: bool = False
    """Train through ``torch.compile`` (inductor; TCM's fields stay one operator). The first
    steps take longer while it compiles; validation runs the eager model."""
    checkpoint_interval: int = 0
    """Also write ``last.pt`` every this many optimizer steps; 0: at epoch ends only."""
    eval_interval: int = 1
    """Evaluate every this many epochs (and after the last); 0: never."""
    log_interval: int = 20
    """Optimizer steps between ``metrics.jsonl`` step rows."""
    tensorboard: bool = True
    """Write TensorBoard events when ``tensorboard`` is installed."""


@dataclass
class EvalConfig:
    """Evaluation views."""

    num_clips: int = 1
    """Clips per video (scores averaged after softmax)."""
    num_crops: int = 1
    """Crops per clip: 1 (centre) or 3 (along the long side)."""
    batch_size: int = 4
    """Videos per batch."""
    num_workers: int | None = None
    """DataLoader workers; ``null``: ``data.num_workers``."""


@dataclass
class DistConfig:
    """Distributed training (processes started by ``torchrun``)."""

    backend: Literal["auto", "nccl", "gloo"] = "auto"
    """``auto``: NCCL on GPUs, gloo on CPUs."""
    sync_bn: bool = False
    """Convert BatchNorm to SyncBatchNorm (CUDA only)."""
    find_unused_parameters: bool = False
    timeout_min: int = 30


@dataclass
class RunConfig:
    """A complete training (and testing) configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    name: str = ""
    """Name of the run (the config file's stem by default); names the default work dir."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, not tuples), YAML- and ``torch.load(weights_only=True)``-safe."""
        return to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Build and type-check a config from a (nested) dict; unknown keys are errors."""
        return build_dataclass(cls, data)

    def replace(self, overrides: list[str] | dict[str, Any]) -> RunConfig:
        """A copy with ``key.path=value`` overrides applied (strings or a dict)."""
        return self.from_dict(apply_overrides(self.to_dict(), overrides, type(self)))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
