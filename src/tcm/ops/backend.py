"""Which implementation runs behind the TCM operators (:mod:`tcm.ops.registered`).

The operators ``tcm::local_correlation`` and ``tcm::mtdm_fields`` have two implementations:
the compiled CPU kernels (:mod:`tcm.ops._extension`) and plain PyTorch (every device, and the
reference). Each call of the CPU kernel picks one:

- ``"auto"`` (default): the compiled kernels when they can be built or loaded, else plain
  PyTorch.
- ``"torch"``: always plain PyTorch.
- ``"extension"``: the compiled kernels; raises when they cannot be loaded.

Other devices always run plain PyTorch. The choice is made when the operator runs, so graphs
traced, exported or compiled hold the operator itself, whatever the backend.

Set it with :func:`set_backend`, temporarily with :func:`use_backend`, or for a whole process
with the environment variable ``TCM_OPS_BACKEND``. ``TCM_DISABLE_EXTENSIONS=1`` never builds
the kernels (``"auto"`` then means ``"torch"``).

Example:
    >>> import tcm.ops
    >>> with tcm.ops.use_backend("torch"):
    ...     reference = tcm.ops.local_correlation(a, b, 15)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from types import ModuleType

import torch

from tcm.ops import _extension

BACKENDS = ("auto", "torch", "extension")
BACKEND_ENV = "TCM_OPS_BACKEND"


def _validate(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown ops backend {name!r}; expected one of {', '.join(BACKENDS)}")
    return name


_backend = _validate(os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto")


def set_backend(name: str) -> None:
    """Select ``"auto"``, ``"torch"`` or ``"extension"`` for every later call (see module doc)."""
    global _backend
    if _validate(name) == "extension":
        _require_extension()
    _backend = name


def get_backend() -> str:
    """The selected backend name."""
    return _backend


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager: ``name`` inside the block, the previous backend after it."""
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def extension_available() -> bool:
    """Whether the compiled CPU kernels load here (building them on first call)."""
    return _extension.load_extension() is not None


def _require_extension() -> ModuleType:
    module = _extension.load_extension()
    if module is None:
        reason = (
            f"{_extension.DISABLE_ENV} is set"
            if _extension.extensions_disabled()
            else _extension.extension_error()
        )
        raise RuntimeError(f"the tcm ops backend 'extension' is unavailable: {reason}")
    return module


def kernels_for(*tensors: torch.Tensor) -> ModuleType | None:
    """The compiled kernels' module where they run on ``tensors`` (float32/float64 CPU maps,
    backend allowing them, kernels loading), else ``None`` (plain PyTorch)."""
    if _backend == "torch" or not all(
        t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) for t in tensors
    ):
        return None
    return _require_extension() if _backend == "extension" else _extension.load_extension()
