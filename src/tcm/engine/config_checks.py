"""Pre-flight checks of a run config, before anything is built or read: values in range and
in agreement, the files it names there, its classes counted, its list files' labels in range.
A problem is a :class:`~tcm.errors.ConfigError` naming the key at fault and what to do."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from tcm.engine.config import RunConfig
from tcm.errors import ConfigError


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


def resolve_classes(cfg: RunConfig) -> tuple[int, list[str] | None]:
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


def check_config(cfg: RunConfig, *, training: bool = True) -> tuple[int, list[str] | None]:
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


def check_values(cfg: RunConfig) -> None:
    """Values that must be in range or agree with each other (no file is read).

    Raises:
        ConfigError: with the key at fault.
    """
    _check_model_name(cfg)
    _check_counts(cfg)
    _check_data_values(cfg)
    _check_schedule_and_weights(cfg)


def _check_model_name(cfg: RunConfig) -> None:
    """``model.name``: a registered model, or the import path of a backbone that imports."""
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


def _check_counts(cfg: RunConfig) -> None:
    """Counts, intervals and rates of the model, optimisation, loop and evaluation."""
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


def _check_data_values(cfg: RunConfig) -> None:
    """Geometry, augmentation, decoding and frame names of ``data``."""
    from tcm.data.frame_names import check_frame_template

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


def _check_schedule_and_weights(cfg: RunConfig) -> None:
    """The schedule's milestones and warm-up; the weight files the model starts from."""
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


def _check_files(cfg: RunConfig, training: bool) -> dict[str, str]:
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
    import numpy as np

    from tcm.data.record_table import read_table

    try:
        records = read_table(path)  # the dataset built next reuses this read
    except ValueError as error:
        raise ConfigError(f"{key}: {error}") from None
    bad = np.flatnonzero((records.labels < 0) | (records.labels >= num_classes))
    if len(bad):
        first = records[bad[0]]
        more = f" ({len(bad) - 1} more lines like it)" if len(bad) > 1 else ""
        classes = f"{num_classes} class" + ("es" if num_classes != 1 else "")
        source = f" ({counted_by})" if counted_by else ""
        raise ConfigError(
            f"{key}: {path}:{first.line}: label {first.label} is not in [0, {num_classes}), "
            f"the config has {classes}{source}{more}"
        )
