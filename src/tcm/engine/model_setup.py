"""The model a training config describes: built, initialised and with its BatchNorm policy.

``model.freeze_bn`` keeps BatchNorm layers in eval mode (running statistics) with their affine
parameters fixed: ``none``, ``partial`` (all but the first, TSM's partial BN for small batches)
or ``all``. ``model.init_from`` starts from a project checkpoint (fine-tuning).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch
from torch import nn

from tcm.engine.config import RunConfig

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's generators of this process."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The model's BatchNorm layers in definition order (the stem's first)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def frozen_batch_norms(model: nn.Module, mode: str) -> list[nn.Module]:
    """BatchNorm layers frozen by ``model.freeze_bn``: ``none``, ``partial`` (all but the
    first, TSM's partial BN) or ``all``."""
    norms = batch_norms(model)
    if mode == "partial":
        return norms[1:]
    return norms if mode == "all" else []


def freeze_batch_norms(model: nn.Module, mode: str) -> None:
    """Stop the affine parameters of the frozen BatchNorm layers from training."""
    for norm in frozen_batch_norms(model, mode):
        for param in norm.parameters():
            param.requires_grad_(False)


def set_train_mode(model: nn.Module, mode: str) -> None:
    """``model.train()`` with the frozen BatchNorm layers kept in eval mode (running stats)."""
    model.train()
    for norm in frozen_batch_norms(model, mode):
        norm.eval()


def load_initial_weights(model: nn.Module, path: str) -> None:
    """Start from a tcm checkpoint (fine-tuning): every tensor must fit, except the
    classifier, which is dropped when its shape differs (another class count)."""
    from tcm.checkpoint import load_checkpoint
    from tcm.models import check_state_dict

    state = dict(load_checkpoint(path)["state_dict"])
    own = model.state_dict()
    dropped = [
        k
        for k in list(state)
        if k.startswith("fc.") and k in own and state[k].shape != own[k].shape
    ]
    for key in dropped:
        del state[key]
    if dropped:
        logger.info("init_from %s: classifier re-initialised (%s)", path, ", ".join(dropped))
        for key in dropped:
            state[key] = own[key]
    try:
        check_state_dict(state, own)
    except ValueError as error:
        raise ValueError(f"model.init_from {path}: {error}") from None
    model.load_state_dict(state)
    logger.info("initialised from %s", path)


def model_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """Options of ``create_model`` that describe the architecture (stored in checkpoints)."""
    kwargs = {k: v for k, v in cfg.model.kwargs.items() if k != "pretrained"}
    return {"dropout": cfg.model.dropout, **kwargs}


def build_model(cfg: RunConfig, num_classes: int) -> nn.Module:
    """The config's model on the CPU: created (with ``model.pretrained`` weights), initialised
    from ``model.init_from`` and with ``model.freeze_bn`` applied. Seeds the generators with
    ``train.seed`` first, so that every process builds the same initial weights."""
    from tcm.models import create_model

    seed_everything(cfg.train.seed)
    model = create_model(
        cfg.model.name,
        num_classes,
        cfg.model.num_segments,
        pretrained=cfg.model.pretrained,
        **model_kwargs(cfg),
    )
    if cfg.model.init_from:
        load_initial_weights(model, cfg.model.init_from)
    freeze_batch_norms(model, cfg.model.freeze_bn)
    return model
