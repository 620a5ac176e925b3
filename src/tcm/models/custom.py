"""Models on a user's own backbone, named by import path: ``"my_package.nets:TinyCNN"``.

``create_model("my_package.nets:TinyCNN", K, T, backbone_kwargs={...}, tcm_stages=["block2"])``
imports ``TinyCNN`` (an ``nn.Module`` class, or a function returning a backbone), builds it with
``backbone_kwargs``, plugs in the temporal shift (``temporal_shift: true``) and TCM (after the
layers in ``tcm_stages``) and puts the head on it. The name and options are stored in
checkpoints like any registered model's, so ``tcm test`` and ``tcm predict`` rebuild it once
the module is allowed (``--allow-module my_package.nets``; :mod:`tcm.models.from_checkpoint`).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from typing import Any

from torch import nn

from tcm.models.assemble import assemble_recognizer
from tcm.models.recognizer import VideoRecognizer


def is_import_path(name: str) -> bool:
    """Whether a model name is ``module.path:attribute`` rather than a registered name."""
    return ":" in name


def import_module_name(path: str) -> str:
    """The module an import path names: ``"pkg.nets:TinyCNN"`` -> ``"pkg.nets"``."""
    return path.partition(":")[0]


def import_backbone(path: str) -> Callable[..., nn.Module]:
    """The backbone class or factory function ``path`` (``"package.module:Name"``) names.

    Imports the module: call it only for a name the user gave (a config being trained, a
    module allowed on the command line), never for one read from a file alone (see
    :mod:`tcm.models.from_checkpoint`). Only ``nn.Module`` subclasses and plain Python
    functions are accepted, none from the standard library and no function of tcm's own.

    Raises:
        ValueError: a malformed or relative path, a module that does not import, a missing
            attribute, or an attribute that is not a backbone.
    """
    module_name, _, attribute = path.partition(":")
    if module_name.startswith("."):
        raise ValueError(
            f"model {path!r}: a relative import path cannot be resolved; write the module's "
            "full name, e.g. 'my_package.nets:Name'"
        )
    if not module_name or not attribute.isidentifier():
        raise ValueError(f"model {path!r}: an import path reads 'package.module:Name'")
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names | {"builtins"}:
        raise ValueError(f"model {path!r}: a backbone cannot come from the standard library")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"model {path!r}: cannot import {module_name} ({error})") from None
    except Exception as error:  # the module's own code failed while importing
        raise ValueError(
            f"model {path!r}: importing {module_name} failed: {type(error).__name__}: {error}"
        ) from None
    factory = getattr(module, attribute, None)
    if factory is None:
        raise ValueError(f"model {path!r}: {module_name} has no attribute {attribute!r}")
    is_module_class = inspect.isclass(factory) and issubclass(factory, nn.Module)
    if not (is_module_class or inspect.isfunction(factory)):
        raise ValueError(f"model {path!r}: not an nn.Module class or a function")
    if top == "tcm" and not is_module_class:
        raise ValueError(
            f"model {path!r}: a function of tcm itself, not a backbone; name a registered "
            "model (`tcm info` lists them) or a backbone class"
        )
    return factory


def build_custom_model(
    path: str,
    *,
    num_classes: int,
    num_segments: int,
    backbone_kwargs: dict[str, Any] | None = None,
    temporal_shift: bool = False,
    **options,
) -> VideoRecognizer:
    """Build a recognizer on the backbone ``path`` names (see the module's docstring).

    Args:
        path: ``"package.module:Name"``.
        num_classes, num_segments: ``K`` and ``T``.
        backbone_kwargs: keyword arguments of the backbone's constructor.
        temporal_shift: shift in every residual block found, or in ``shift_blocks``.
        **options: ``tcm_stages`` (layer names, default none), TCM's options,
            ``shift_fold_div``, ``shift_blocks``, ``dropout``, ``pretrained``.
    """
    backbone = import_backbone(path)(**(backbone_kwargs or {}))
    if not isinstance(backbone, nn.Module):
        raise ValueError(f"model {path!r}: returned a {type(backbone).__name__}, not a module")
    return assemble_recognizer(
        backbone,
        num_classes=num_classes,
        num_segments=num_segments,
        temporal_shift=temporal_shift,
        **options,
    )
