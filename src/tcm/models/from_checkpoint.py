"""The model a checkpoint describes, built without running code the checkpoint names.

A checkpoint is read with ``torch.load(weights_only=True)``: tensors and plain data only, no
pickled objects. Its ``model`` entry (name, class count, frames, options) can make tcm:

- build a registered model (``tcm info`` lists them) with the stored options; only the
  registry's own builders run;
- build a user's backbone named by import path (``"my_package.nets:TinyCNN"``) only if that
  module was allowed for the call: ``--allow-module my_package.nets`` on the command line,
  ``allow_modules=["my_package.nets"]`` in Python (allowing ``my_package`` allows its
  submodules). Without it nothing is imported: loading stops with one line naming the module
  the checkpoint asks for and how to allow it. Allowing a module trusts it like any Python
  import: its code runs, with the constructor arguments stored in the checkpoint.

It never makes tcm read a file or URL: ``pretrained`` (initial backbone weights) is a
training setting, and one found in a checkpoint is dropped with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tcm.checkpoint import load_checkpoint
from tcm.errors import ImportNotAllowedError
from tcm.models.convert import check_state_dict
from tcm.models.custom import import_module_name, is_import_path
from tcm.models.recognizer import VideoRecognizer
from tcm.models.registry import create_model, list_models

logger = logging.getLogger(__name__)

# Options read from files or the network when a model is built: training-time only.
TRAINING_ONLY_OPTIONS = ("pretrained",)
_PLAIN_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class ModelSpec:
    """What a checkpoint's ``model`` entry asks to build, checked."""

    name: str
    num_classes: int
    num_segments: int
    kwargs: dict[str, Any]


def is_allowed(module: str, allow_modules: Iterable[str]) -> bool:
    """Whether ``module`` is one of ``allow_modules`` or inside one of them (a package)."""
    return any(module == allowed or module.startswith(allowed + ".") for allowed in allow_modules)


def _is_plain(value: Any) -> bool:
    """Plain data: numbers, strings, ``None`` and lists or string-keyed dicts of them."""
    if isinstance(value, _PLAIN_SCALARS):
        return True
    if isinstance(value, list | tuple):
        return all(_is_plain(item) for item in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _count(spec: Mapping, key: str, source: str) -> int:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{source}: model.{key} must be a positive integer, got {value!r}")
    return value


def model_spec(
    checkpoint: Mapping, allow_modules: Iterable[str] = (), source: str = "checkpoint"
) -> ModelSpec:
    """Check a checkpoint's ``model`` entry (see the module docstring) and return it without
    training-only options.

    Raises:
        ImportNotAllowedError: the model is a user's backbone whose module was not allowed.
        ValueError: a malformed entry (``source`` names the file).
    """
    spec = checkpoint.get("model")
    if not isinstance(spec, Mapping):
        raise ValueError(f"{source}: no model description")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{source}: model.name must be a model name, got {name!r}")
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, Mapping) or not _is_plain(dict(kwargs)):
        raise ValueError(f"{source}: model.kwargs must be plain options (numbers, strings, lists)")
    if is_import_path(name):
        module = import_module_name(name)
        allowed = list(allow_modules)
        if not is_allowed(module, allowed):
            also = f" (allowed: {', '.join(allowed)})" if allowed else ""
            raise ImportNotAllowedError(
                f"{source}: the model is built by {name}, which would import and run the module "
                f"{module!r}; nothing was imported{also}. If you trust it, allow it: "
                f"--allow-module {module} (Python: allow_modules=[{module!r}])"
            )
    elif name not in list_models():
        raise ValueError(
            f"{source}: unknown model {name!r} (written by another version of tcm?); "
            "`tcm info` lists the models"
        )
    kwargs = dict(kwargs)
    for option in TRAINING_ONLY_OPTIONS:
        if kwargs.pop(option, None) is not None:
            logger.warning(
                "%s: model option %r ignored: it is a training setting, never taken from a "
                "checkpoint",
                source,
                option,
            )
    return ModelSpec(
        name, _count(spec, "num_classes", source), _count(spec, "num_segments", source), kwargs
    )


def model_from_checkpoint(
    checkpoint: dict | str, *, allow_modules: Iterable[str] = ()
) -> tuple[VideoRecognizer, dict]:
    """Build the model a project checkpoint describes and load its weights strictly.

    Args:
        checkpoint: a path, or a dict from :func:`tcm.checkpoint.load_checkpoint`.
        allow_modules: modules a user's backbone may be imported from (see the module
            docstring); registered models need none.

    Returns:
        ``(model, checkpoint)`` with the model in eval mode.

    Raises:
        ImportNotAllowedError: the checkpoint's backbone module is not in ``allow_modules``.

    Example:
        >>> model, checkpoint = model_from_checkpoint("best.pt")  # doctest: +SKIP
        >>> model, _ = model_from_checkpoint("custom.pt", allow_modules=["my_package.nets"])  # doctest: +SKIP
    """
    source = "checkpoint"
    if not isinstance(checkpoint, dict):
        source = str(checkpoint)
        checkpoint = load_checkpoint(checkpoint)
    spec = model_spec(checkpoint, allow_modules, source)
    model = create_model(spec.name, spec.num_classes, spec.num_segments, **spec.kwargs)
    check_state_dict(checkpoint["state_dict"], model.state_dict())
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint
