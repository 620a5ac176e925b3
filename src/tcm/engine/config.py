"""Typed training configuration: dataclasses, YAML files with ``_base_`` inheritance, overrides.

A config is a :class:`TrainConfig` with one section per concern::

    model:    what to build (registered name, classes, frames, dropout, initialisation)
    data:     where the videos are and how clips are sampled and augmented
    optim:    SGD, learning rate (scaled with the global batch), clipping, accumulation
    schedule: epochs, warm-up, step or cosine decay
    train:    seed, device, mixed precision, checkpoint / evaluation / log intervals
    eval:     test views (clips x crops) and batch size
    dist:     backend, SyncBatchNorm

YAML files may start with ``_base_: other.yaml`` (a path relative to the file, or the name of a
shipped config; a list merges several, later ones winning): the file's keys are merged over
its base, section by section. Any key may then be overridden with ``key.path=value`` strings
(the ``--set`` option of ``tcm train``), values parsed as YAML (``0.1``, ``[8, 16]``, ``null``,
``true``). Numbers are read as people write them, in files and overrides alike: ``1e-4``,
``5E-4``, ``.5``, ``1.``, ``1_000`` are numbers (plain YAML 1.1 would read the first two as
strings). Every value is checked against the field's type, and an unknown key is an error
that names the nearest valid one::

    >>> cfg = load_config("sthv1_tcm_tsm_r50_8f", overrides=["optim.lr=0.02"])
    >>> cfg.optim.lr
    0.02
    >>> load_config("sthv1_tcm_tsm_r50_8f", overrides=["optim.learning_rate=0.02"])
    Traceback (most recent call last):
    ...
    tcm.engine.config.ConfigError: unknown key 'optim.learning_rate' (did you mean 'optim.lr'?)

A config can also be built in Python: ``TrainConfig(model=ModelConfig(name="tsm_resnet10"))``.
:meth:`TrainConfig.to_dict` gives the plain dict that is saved as ``config.yaml`` in the work
dir and inside every checkpoint; :meth:`TrainConfig.from_dict` reads it back.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
import types
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from tcm.data.decoding import DEFAULT_FRAME_TEMPLATE

BASE_KEY = "_base_"


class ConfigError(ValueError):
    """An invalid configuration: unknown key, wrong type, missing or inconsistent value."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads ``1e-4``, ``5E-4`` and ``1.5e3`` as numbers.

    YAML 1.1, which PyYAML implements, wants a dot and a signed exponent (``1.0e-4``);
    YAML 1.2 and every other reader of numbers accept the forms people write.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$""",
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` with the number forms of :class:`_Loader`.

    Example:
        >>> parse_yaml("lr: 1e-4")
        {'lr': 0.0001}
    """
    return yaml.load(text, Loader=_Loader)


def _number(text: str) -> float | None:
    """A float spelled as people write it (``1e-4``, ``.5``, ``1.``, ``1_000``), else None."""
    text = text.strip()
    if not re.fullmatch(r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?", text):
        return None
    return float(text.replace("_", ""))


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


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
class TrainConfig:
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
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build and type-check a config from a (nested) dict; unknown keys are errors."""
        return _build(cls, data, "")

    def replace(self, overrides: list[str] | dict[str, Any]) -> TrainConfig:
        """A copy with ``key.path=value`` overrides applied (strings or a dict)."""
        return self.from_dict(apply_overrides(self.to_dict(), overrides, type(self)))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


# --------------------------------------------------------------------------------------------
# Building and type checking
# --------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    hints = get_type_hints(cls)
    for name in _field_names(cls):
        path = f"{prefix}{name}"
        keys.append(path)
        if dataclasses.is_dataclass(hints[name]):
            keys.extend(_all_keys(hints[name], path + "."))
    return keys


# Names other training codes use for these keys.
_SYNONYMS = {
    "learning_rate": "lr",
    "base_lr": "lr",
    "lr_steps": "milestones",
    "lr_scheduler": "type",
    "wd": "weight_decay",
    "frames": "num_segments",
    "num_frames": "num_segments",
    "segments": "num_segments",
    "arch": "name",
    "workers": "num_workers",
    "batch": "batch_size",
    "clip_gradient": "clip_grad_norm",
    "clip_grad": "clip_grad_norm",
    "epoch": "epochs",
}


def _suggest(key: str, prefix: str, cls: type, root: type) -> str:
    """`` (did you mean 'x.y'?)`` for an unknown ``prefix + key``, or the valid keys."""
    candidates = _field_names(cls)
    everywhere = _all_keys(root)
    key = _SYNONYMS.get(key, key)
    if key in candidates:
        return f" (did you mean '{prefix}{key}'?)"
    elsewhere = [k for k in everywhere if k.rsplit(".", 1)[-1] == key]
    match = (
        elsewhere[:1]
        or [prefix + m for m in difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)]
        or [
            k
            for leaf in difflib.get_close_matches(
                key, [k.rsplit(".", 1)[-1] for k in everywhere], n=1, cutoff=0.75
            )
            for k in everywhere
            if k.rsplit(".", 1)[-1] == leaf
        ][:1]
    )
    if match:
        return f" (did you mean '{match[0]}'?)"
    where = f"'{prefix.rstrip('.')}'" if prefix else "the top level"
    return f"; valid keys of {where}: {', '.join(candidates)}"


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " or ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, path: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return copy.deepcopy(value)
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{path} may not be null")
        problems = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, path)
            except ConfigError as error:
                problems.append(_type_name(option))
                last = error
        if len(problems) == 1:
            raise last
        raise ConfigError(f"{path} must be {' or '.join(problems)}, got {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(
                f"{path} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}{hint}"
            )
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path + ".")
    if value is None:
        raise ConfigError(f"{path} may not be null")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path} must be a list, got {value!r}")
        (item,) = get_args(tp) or (Any,)
        return [_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a mapping, got {value!r}")
        return copy.deepcopy(dict(value))
    return _coerce_scalar(value, tp, path)


def _coerce_scalar(value: Any, tp: Any, path: str) -> Any:
    """``value`` as a ``bool``, ``int``, ``float`` or ``str`` field."""
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{path} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _number(value) is not None:
            return _number(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported field type {tp}")  # pragma: no cover


def _build(cls: type, data: Any, prefix: str, root: type | None = None) -> Any:
    root = root or cls
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'the config'} must be a mapping, got {data!r}")
    hints = get_type_hints(cls)
    names = set(_field_names(cls))
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown key '{prefix}{key}'{_suggest(str(key), prefix, cls, root)}")
    values = {}
    for name in names & data.keys():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            values[name] = _build(tp, data[name], f"{prefix}{name}.", root)
        else:
            values[name] = _coerce(data[name], tp, f"{prefix}{name}")
    return cls(**values)


def _field_type(cls: type, path: list[str]) -> Any:
    """Type of the field at ``path`` (``None`` inside free-form dicts or unknown keys)."""
    tp: Any = cls
    for part in path:
        if not dataclasses.is_dataclass(tp):
            return None
        hints = get_type_hints(tp)
        if part not in hints:
            return None
        tp = hints[part]
    return tp


def _parse_value(text: str, tp: Any) -> Any:
    try:
        value = parse_yaml(text) if text.strip() else ""
    except yaml.YAMLError:
        return text
    accepts_str = tp is str or (get_origin(tp) in (Union, types.UnionType) and str in get_args(tp))
    if accepts_str and value is not None and not isinstance(value, str):
        return text  # e.g. data.frame_template={:05d}.jpg, model.name=123
    return value


def apply_overrides(
    data: dict[str, Any], overrides: list[str] | dict[str, Any], cls: type = TrainConfig
) -> dict[str, Any]:
    """Set ``a.b.c=value`` overrides into a nested dict (a copy); values are parsed as YAML.

    Unknown keys are reported when the dict is built with :meth:`TrainConfig.from_dict`.
    """
    data = copy.deepcopy(data)
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = []
        for text in overrides:
            key, sep, raw = text.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"override {text!r} is not of the form key.path=value")
            key = key.strip()
            items.append((key, _parse_value(raw, _field_type(cls, key.split(".")))))
    for key, value in items:
        parts = key.split(".")
        node = data
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"cannot set {key}: {'.'.join(parts[: depth + 1])} is not a section"
                )
            node = child
        node[parts[-1]] = value
    return data


# --------------------------------------------------------------------------------------------
# YAML files
# --------------------------------------------------------------------------------------------


def list_configs() -> list[str]:
    """Names of the shipped configs (``src/tcm/configs/*.yaml``; ``_base_*`` files, which
    hold shared parts, are left out)."""
    folder = resources.files("tcm") / "configs"
    return sorted(
        p.name[: -len(".yaml")]
        for p in folder.iterdir()
        if p.name.endswith(".yaml") and not p.name.startswith("_")
    )


def find_config(name_or_path: str | os.PathLike) -> Path:
    """A config file from a path, or from the name of a shipped config."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    name = str(name_or_path)
    shipped = (
        resources.files("tcm") / "configs" / (name if name.endswith(".yaml") else f"{name}.yaml")
    )
    if shipped.is_file():
        return Path(str(shipped))
    near = difflib.get_close_matches(Path(name).stem, list_configs(), n=3)
    hint = (
        f"; did you mean {', '.join(near)}?"
        if near
        else "; `tcm train --list` shows the shipped configs"
    )
    raise FileNotFoundError(f"{name}: no such config file or shipped config{hint}")


def _deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_config_dict(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config file as a dict, its ``_base_`` files merged in."""
    from tcm.utils.files import read_text

    path = find_config(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: circular _base_ chain")
    try:
        data = parse_yaml(read_text(path, "config file")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping")
    bases = data.pop(BASE_KEY, None) or []
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        base_path = path.parent / base
        source = base_path if base_path.is_file() else base
        merged = _deep_merge(merged, read_config_dict(source, (*_seen, path)))
    return _deep_merge(merged, data)


def load_config(
    name_or_path: str | os.PathLike, overrides: list[str] | dict[str, Any] | None = None
) -> TrainConfig:
    """Read a config file (or shipped config name), apply overrides, check every value.

    The run's ``name`` defaults to the file's stem.
    """
    path = find_config(name_or_path)
    data = read_config_dict(path)
    data.setdefault("name", path.stem)
    overrides = overrides or []
    try:
        return TrainConfig.from_dict(apply_overrides(data, overrides))
    except ConfigError as error:
        raise ConfigError(f"{_culprit(path, data, overrides, error)}: {error}") from None


def _culprit(
    path: Path, data: dict[str, Any], overrides: list[str] | dict[str, Any], error: ConfigError
) -> str:
    """Where the value behind ``error`` comes from: the config file ``path`` when it fails that
    way alone, else the first override (``--set KEY=VALUE``) after which it does."""
    items = list(overrides.items()) if isinstance(overrides, dict) else list(overrides)
    for count, item in enumerate([None, *items]):
        if item is None:  # the file alone
            try:
                TrainConfig.from_dict(data)
            except ConfigError as failure:
                if str(failure) == str(error):
                    return path.name
            continue
        given = dict(items[:count]) if isinstance(overrides, dict) else items[:count]
        try:
            TrainConfig.from_dict(apply_overrides(data, given))
        except ConfigError as failure:
            if str(failure) == str(error):
                return f"--set {item if isinstance(item, str) else '='.join(map(str, item))}"
    return path.name


# --------------------------------------------------------------------------------------------
# Checks before any data is loaded
# --------------------------------------------------------------------------------------------


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://", "file://"))


def _need_file(value: str | None, key: str, what: str) -> Path:
    if not value:
        raise ConfigError(
            f"{key} is not set: give the {what} in the config or with --set {key}=PATH"
        )
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}: {path} does not exist (the {what})")
    return path


def resolve_classes(cfg: TrainConfig) -> tuple[int, list[str] | None]:
    """``(num_classes, class names or None)`` from ``model.num_classes`` and ``data.classes``.

    A count that does not match ``classes.txt`` is an error.
    """
    from tcm.data import read_classes

    names = None
    if cfg.data.classes:
        path = _need_file(cfg.data.classes, "data.classes", "classes.txt file")
        try:
            names = read_classes(path)
        except ValueError as error:
            raise ConfigError(f"data.classes: {error}") from None
        if not names:
            raise ConfigError(f"data.classes: {path} lists no class name")
        if cfg.model.num_classes is not None and cfg.model.num_classes != len(names):
            raise ConfigError(
                f"model.num_classes={cfg.model.num_classes} but data.classes ({path}) lists "
                f"{len(names)} classes; fix one of them (or set model.num_classes=null)"
            )
    num_classes = len(names) if names is not None else cfg.model.num_classes
    if num_classes is None:
        raise ConfigError("set model.num_classes or data.classes (a classes.txt file)")
    if num_classes < 1:
        raise ConfigError(f"model.num_classes must be positive, got {num_classes}")
    return num_classes, names


def check_config(cfg: TrainConfig, *, training: bool = True) -> tuple[int, list[str] | None]:
    """Check a config before anything is built or read: files exist, values agree.

    Args:
        training: check what ``tcm train`` needs (training list); otherwise what ``tcm test``
            needs (a test or validation list).

    Returns:
        ``(num_classes, class names or None)``.

    Raises:
        ConfigError: with the key at fault and what to do.
    """
    from tcm.engine.config_fit import check_model_builds, check_views_fit

    check_values(cfg)
    check_views_fit(cfg)
    lists = _check_files(cfg, training)
    num_classes, names = resolve_classes(cfg)
    check_model_builds(cfg, num_classes)
    counted_by = f"data.classes: {cfg.data.classes}" if names is not None else "model.num_classes"
    for key, path in lists.items():
        check_list_labels(path, key, num_classes, counted_by)
    return num_classes, names


def check_values(cfg: TrainConfig) -> None:
    """Values that must be in range or agree with each other (no file is read).

    Raises:
        ConfigError: with the key at fault.
    """
    from tcm.data.decoding import check_frame_template
    from tcm.models import list_models
    from tcm.models.custom import import_backbone, is_import_path

    if is_import_path(cfg.model.name):
        try:
            import_backbone(cfg.model.name)
        except ValueError as error:
            raise ConfigError(f"model.name: {error}") from None
    elif cfg.model.name not in list_models():
        near = difflib.get_close_matches(cfg.model.name, list_models(), n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else "; `tcm info` lists the models"
        raise ConfigError(f"model.name: unknown model '{cfg.model.name}'{hint}")
    positive = {
        "model.num_segments": cfg.model.num_segments,
        "data.batch_size": cfg.data.batch_size,
        "data.input_size": cfg.data.input_size,
        "optim.accumulate_steps": cfg.optim.accumulate_steps,
        "schedule.epochs": cfg.schedule.epochs,
        "eval.num_clips": cfg.eval.num_clips,
        "eval.batch_size": cfg.eval.batch_size,
        "train.log_interval": cfg.train.log_interval,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key} must be at least 1, got {value}")
    if cfg.eval.num_crops not in (1, 3):
        raise ConfigError(f"eval.num_crops must be 1 or 3, got {cfg.eval.num_crops}")
    if cfg.optim.lr <= 0:
        raise ConfigError(f"optim.lr must be positive, got {cfg.optim.lr}")
    clip = cfg.optim.clip_grad_norm
    if clip is not None and not clip > 0:  # 0 would zero every gradient: the model never moves
        raise ConfigError(
            f"optim.clip_grad_norm must be positive, or null for no clipping, got {clip}"
        )
    if cfg.train.eval_interval < 0:
        raise ConfigError(
            f"train.eval_interval must be 0 (never) or more, got {cfg.train.eval_interval}"
        )
    if cfg.train.checkpoint_interval < 0:
        raise ConfigError(
            "train.checkpoint_interval must be 0 (at epoch ends only) or more, got "
            f"{cfg.train.checkpoint_interval}"
        )
    if cfg.dist.timeout_min < 1:
        raise ConfigError(f"dist.timeout_min must be at least 1 minute, got {cfg.dist.timeout_min}")
    resize = cfg.data.resize
    if isinstance(resize, list) and (len(resize) != 2 or min(resize) < 1):
        raise ConfigError(f"data.resize must be a positive int or [H, W], got {resize}")
    if isinstance(resize, int) and resize < 1:
        raise ConfigError(f"data.resize must be positive (the short side) or null, got {resize}")
    side_range = cfg.data.short_side_range
    if side_range is not None and (len(side_range) != 2 or not 0 < side_range[0] <= side_range[1]):
        raise ConfigError(
            f"data.short_side_range must be [low, high], 0 < low <= high, got {side_range}"
        )
    if cfg.data.decode_threads < 0:
        raise ConfigError(
            f"data.decode_threads must be 0 (one per core) or more, got {cfg.data.decode_threads}"
        )
    if cfg.data.dense_stride < 1:
        raise ConfigError(f"data.dense_stride must be at least 1, got {cfg.data.dense_stride}")
    if not cfg.data.scales or not all(0 < scale <= 1 for scale in cfg.data.scales):
        raise ConfigError(f"data.scales must be in (0, 1], got {cfg.data.scales}")
    try:
        check_frame_template(cfg.data.frame_template, "data.frame_template")
    except ValueError as error:
        raise ConfigError(str(error)) from None
    milestones = cfg.schedule.milestones
    if cfg.schedule.type == "step" and list(milestones) != sorted(milestones):
        raise ConfigError(f"schedule.milestones must be increasing, got {milestones}")
    if cfg.schedule.warmup_epochs > cfg.schedule.epochs:
        raise ConfigError("schedule.warmup_epochs is longer than the training")
    if not 0 < cfg.schedule.warmup_start_factor <= 1:
        raise ConfigError("schedule.warmup_start_factor must be in (0, 1]")
    for key in ("pretrained", "init_from"):
        value = getattr(cfg.model, key)
        if value and not _is_url(value) and not Path(value).expanduser().is_file():
            raise ConfigError(f"model.{key}: {value} does not exist")


def _check_files(cfg: TrainConfig, training: bool) -> dict[str, str]:
    """The data folder and the list files the command reads: ``{key: path}`` of the lists."""
    root = cfg.data.root
    if not root:
        raise ConfigError(
            "data.root is not set: give the folder of the videos in the config or with "
            "--set data.root=DIR"
        )
    if not Path(root).expanduser().is_dir():
        raise ConfigError(f"data.root: {root} is not a folder")
    lists = {}
    if training:
        lists["data.train_list"] = _need_file(
            cfg.data.train_list, "data.train_list", "training list file"
        )
        if cfg.data.val_list:
            lists["data.val_list"] = _need_file(
                cfg.data.val_list, "data.val_list", "validation list file"
            )
    else:
        key = "data.test_list" if cfg.data.test_list else "data.val_list"
        lists[key] = _need_file(
            cfg.data.test_list or cfg.data.val_list, key, "list file to test on"
        )
    return lists


def check_list_labels(
    path: str | os.PathLike, key: str, num_classes: int, counted_by: str = ""
) -> None:
    """Every label of the list file ``path`` must lie in ``[0, num_classes)``.

    Raises:
        ConfigError: naming the key, the file, the first bad line and label, and the class
            count (``counted_by`` names where it comes from, e.g. ``"data.classes"``).
    """
    from tcm.data import read_list

    try:
        records = read_list(path)
    except ValueError as error:
        raise ConfigError(f"{key}: {error}") from None
    bad = [record for record in records if not 0 <= record.label < num_classes]
    if bad:
        first = bad[0]
        more = f" ({len(bad) - 1} more lines like it)" if len(bad) > 1 else ""
        classes = f"{num_classes} class" + ("es" if num_classes != 1 else "")
        source = f" ({counted_by})" if counted_by else ""
        raise ConfigError(
            f"{key}: {path}:{first.line}: label {first.label} is not in [0, {num_classes}), "
            f"the config has {classes}{source}{more}"
        )
