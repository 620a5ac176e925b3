"""SGD with parameter groups, learning-rate scaling and per-step schedules with warm-up."""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from tcm.engine.config import OptimConfig, ScheduleConfig

logger = logging.getLogger(__name__)

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def scaled_lr(cfg: OptimConfig, global_batch: int) -> float:
    """Linear scaling: ``lr * global_batch / base_batch_size`` (``lr`` when no base is set).

    Example:
        >>> scaled_lr(OptimConfig(lr=0.01, base_batch_size=32), 64)
        0.02
    """
    if cfg.base_batch_size is None:
        return cfg.lr
    return cfg.lr * global_batch / cfg.base_batch_size


def param_groups(
    model: nn.Module, cfg: OptimConfig, lr: float, head_prefixes: tuple[str, ...] = ("fc.",)
) -> list[dict]:
    """Parameter groups: weights with weight decay; normalisation parameters and biases without
    (unless ``decay_norm_and_bias``); the classifier (``head_prefixes``) at ``head_lr_mult``.

    Frozen parameters (``requires_grad=False``) are left out. Each group carries ``name`` and
    ``base_lr`` (its learning rate before the schedule).
    """
    no_decay_names = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if isinstance(module, _NORM_TYPES) or param_name == "bias" or param.ndim <= 1:
                no_decay_names.add(full)
    groups: dict[str, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        head = name.startswith(head_prefixes)
        decay = cfg.decay_norm_and_bias or name not in no_decay_names
        key = ("head_" if head else "") + ("decay" if decay else "no_decay")
        if key not in groups:
            group_lr = lr * (cfg.head_lr_mult if head else 1.0)
            groups[key] = {
                "name": key,
                "params": [],
                "weight_decay": cfg.weight_decay if decay else 0.0,
                "lr": group_lr,
                "base_lr": group_lr,
            }
        groups[key]["params"].append(param)
    order = ("decay", "no_decay", "head_decay", "head_no_decay")
    return [groups[k] for k in order if k in groups]


def build_optimizer(model: nn.Module, cfg: OptimConfig, lr: float) -> torch.optim.SGD:
    """SGD (momentum, Nesterov) over :func:`param_groups`."""
    groups = param_groups(model, cfg, lr)
    for group in groups:
        count = sum(p.numel() for p in group["params"])
        logger.debug(
            "group %s: %d tensors, %d parameters, lr %.4g, weight decay %g",
            group["name"],
            len(group["params"]),
            count,
            group["lr"],
            group["weight_decay"],
        )
    return torch.optim.SGD(
        groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0
    )


class LRSchedule:
    """Learning rate per optimizer step: linear warm-up, then step decay, cosine or constant.

    ``set_step(k)`` sets every group's ``lr`` to ``base_lr * factor(k)``, ``k`` being the
    0-based index of the next optimizer step. Step decay happens at epoch boundaries
    (``milestones`` in epochs); warm-up and cosine follow the fractional epoch.

    Example:
        >>> cfg = ScheduleConfig(epochs=10, milestones=[5, 8], warmup_epochs=1)
        >>> s = LRSchedule(None, cfg, steps_per_epoch=100)
        >>> [round(s.factor(k), 3) for k in (0, 50, 100, 500, 800)]
        [0.1, 0.55, 1.0, 0.1, 0.01]
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer | None, cfg: ScheduleConfig, steps_per_epoch: int
    ) -> None:
        if steps_per_epoch < 1:
            raise ValueError("steps_per_epoch must be at least 1")
        self.optimizer = optimizer
        self.cfg = cfg
        self.steps_per_epoch = steps_per_epoch
        self.step_count = 0

    def factor(self, step: int) -> float:
        cfg = self.cfg
        epoch = step / self.steps_per_epoch
        if cfg.warmup_epochs > 0 and epoch < cfg.warmup_epochs:
            start = cfg.warmup_start_factor
            return start + (1.0 - start) * epoch / cfg.warmup_epochs
        if cfg.type == "step":
            whole = step // self.steps_per_epoch
            return cfg.gamma ** sum(1 for m in cfg.milestones if whole >= m)
        if cfg.type == "cosine":
            span = max(cfg.epochs - cfg.warmup_epochs, 1e-8)
            progress = min(max((epoch - cfg.warmup_epochs) / span, 0.0), 1.0)
            floor = cfg.min_lr_factor
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    def set_step(self, step: int) -> None:
        self.step_count = int(step)
        if self.optimizer is None:
            return
        factor = self.factor(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups] if self.optimizer else []

    def state_dict(self) -> dict:
        return {"step": self.step_count, "steps_per_epoch": self.steps_per_epoch}

    def load_state_dict(self, state: dict) -> None:
        if state.get("steps_per_epoch", self.steps_per_epoch) != self.steps_per_epoch:
            logger.warning(
                "the checkpoint's schedule had %d steps per epoch, this run has %d",
                state["steps_per_epoch"],
                self.steps_per_epoch,
            )
        self.set_step(state["step"])


GROUP_SETTINGS = ("base_lr", "weight_decay", "momentum", "nesterov")
"""What the config sets in each parameter group, and a loaded optimizer state replaces."""


def group_settings(optimizer: torch.optim.Optimizer) -> list[dict]:
    """Each group's name and :data:`GROUP_SETTINGS` (to put back after loading a state)."""
    return [
        {key: group[key] for key in ("name", *GROUP_SETTINGS)} for group in optimizer.param_groups
    ]


def apply_group_settings(optimizer: torch.optim.Optimizer, settings: list[dict]) -> list[str]:
    """Give each group the settings :func:`group_settings` took (from the config) where a
    loaded state brought others (a resumed run whose config changed them); the momentum
    buffers are kept. The changes, as ``"base_lr of decay 0.05 -> 0.5"``; ``lr`` is the
    schedule's to set again."""
    changes = []
    for group, wanted in zip(optimizer.param_groups, settings, strict=True):
        for key in GROUP_SETTINGS:
            if group.get(key) != wanted[key]:
                changes.append(f"{key} of {wanted['name']} {group.get(key)} -> {wanted[key]}")
                group[key] = wanted[key]
    return changes
