"""Whether a checked config fits what runs it: its model builds with its options, and a batch
of its test views fits in the machine's memory. Part of
:func:`~tcm.engine.config_checks.check_config`, before anything is built or read."""

from __future__ import annotations

import torch

from tcm.engine.config import RunConfig
from tcm.errors import ConfigError
from tcm.utils.memory import format_bytes, physical_memory_bytes


def check_model_builds(cfg: RunConfig, num_classes: int) -> None:
    """The model the config describes can be built with its options (``model.kwargs``): built
    on the ``meta`` device, which takes no memory and reads no weights.

    Raises:
        ConfigError: naming the option or value at fault.
    """
    from tcm.engine.model_setup import model_kwargs
    from tcm.models import create_model

    try:
        with torch.device("meta"):
            create_model(cfg.model.name, num_classes, cfg.model.num_segments, **model_kwargs(cfg))
    except ValueError as error:
        raise ConfigError(f"model: {error}") from None
    except TypeError as error:  # a value of the wrong type, e.g. widths: 5
        if not cfg.model.kwargs:
            raise
        raise ConfigError(f"model.kwargs {cfg.model.kwargs}: {error}") from None


def check_views_fit(cfg: RunConfig) -> None:
    """One evaluation batch of test views must fit in the machine's memory: the model's input
    alone takes ``eval.batch_size * views * T * 3 * S * S`` float32 numbers (its activations
    take many times that).

    Raises:
        ConfigError: saying how much memory they take, and what to lower.
    """
    total = physical_memory_bytes()
    views = cfg.eval.num_clips * cfg.eval.num_crops
    frames = cfg.eval.batch_size * views * cfg.model.num_segments
    need = frames * 3 * cfg.data.input_size**2 * 4
    if total is not None and need > total:
        raise ConfigError(
            f"{cfg.eval.num_clips}x{cfg.eval.num_crops} test views of {cfg.model.num_segments} "
            f"frames at {cfg.data.input_size}x{cfg.data.input_size}, {cfg.eval.batch_size} videos "
            f"a batch, take {format_bytes(need)} for the model's input alone, more than this "
            f"machine's {format_bytes(total)} of memory: use fewer views (eval.num_clips, tcm test "
            "--views) or a smaller eval.batch_size"
        )
