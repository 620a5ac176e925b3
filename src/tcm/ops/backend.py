"""Choice between the compiled kernels and the pure-PyTorch path of the TCM operators.

Backends:

- ``"auto"`` (default): the compiled CPU kernels for CPU tensors of a floating dtype when they
  can be built or loaded (see :mod:`tcm.ops._extension`); the pure-PyTorch path otherwise (other
  devices), which is also the reference.
- ``"torch"``: always the pure-PyTorch path.
- ``"extension"``: the compiled kernels wherever they apply; raises when they cannot be loaded.

Whatever the backend, while a graph is captured (:func:`is_capturing`: tracing, scripting, ONNX
export, ``torch.export``, ``torch.compile``) the operators take their export-friendly
pure-PyTorch form, whose graph holds for any batch size and converts to ONNX.

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
from dataclasses import dataclass
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


def is_capturing() -> bool:
    """Tracing, scripting, exporting or compiling: graphs must see plain PyTorch ops."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    if torch.onnx.is_in_onnx_export():
        return True
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    if is_exporting is not None and is_exporting():
        return True
    return torch.compiler.is_compiling()


def ops_watched() -> bool:
    """Whether a dispatch mode (a FLOP counter, fake tensors) sees each op: rewritten forms of
    the model's ops (a grouped convolution run dense) would be counted in its place."""
    return torch.utils._python_dispatch._get_current_dispatch_mode() is not None


def _is_plain_cpu_float(t: torch.Tensor) -> bool:
    """A real CPU tensor of a floating dtype (not a fake, meta or functional subclass)."""
    return (
        type(t) in (torch.Tensor, torch.nn.Parameter)
        and t.device.type == "cpu"
        and t.dtype.is_floating_point
    )


@dataclass(frozen=True)
class OpPath:
    """Where one call of an operator runs: ``"exportable"`` (a graph is being captured),
    ``"compiled"`` (``kernels``, the loaded extension module) or ``"torch"``."""

    name: str
    kernels: ModuleType | None = None


EXPORTABLE, TORCH = OpPath("exportable"), OpPath("torch")


def path_for(*tensors: torch.Tensor) -> OpPath:
    """The path of an operator called on ``tensors``, the one choice every operator follows:
    the export-friendly form while a graph is captured; the compiled kernels for real CPU float
    tensors when the backend allows them and they load; plain PyTorch otherwise."""
    if is_capturing():
        return EXPORTABLE
    if _backend == "torch" or not all(_is_plain_cpu_float(t) for t in tensors):
        return TORCH
    kernels = _require_extension() if _backend == "extension" else _extension.load_extension()
    return TORCH if kernels is None else OpPath("compiled", kernels)
