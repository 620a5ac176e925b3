"""Run an exported model without PyTorch: ONNX Runtime or OpenVINO.

``tcm export --format onnx`` writes ``model.onnx`` and ``model.onnx.json`` (preprocessing,
classes, input and output names; see :mod:`tcm.deploy.export`). :class:`ExportedModel` reads
both and runs the file with one of :data:`RUNTIMES`; it takes and returns NumPy arrays.

This module imports only NumPy and the standard library at import time (no PyTorch), and
imports the runtime it is asked for when a model is loaded, so that an edge box needs
``numpy`` and ``onnxruntime`` (or ``openvino``) to run the network itself. Decoding and
preprocessing in :class:`~tcm.deploy.predictor.Predictor` still use the package's data
pipeline, which does import PyTorch.

ONNX Runtime runs with all its graph optimisations (:data:`ORT_OPTIMIZATION`): the *all*
level's layouts make MobileNetV2 TSM + TCM 1.6 times as fast as the *extended* level. Neither
level keeps every clip's logits within 1e-4 of PyTorch's, and PyTorch in float64 does not
either: MTDM's soft-argmax centres its window on the best-matching displacement, so where two
match almost equally, rounding (another order of sums) can pick the other one. On the demo's
528 validation clips this moved the logits of 0 to 2 clips per model and level (by up to 0.3),
and no top-1; the other clips agree within about 5e-6. OpenVINO runs in float32 even on CPUs
with bfloat16 units (where its default, bfloat16, moves logits by about 5e-2). OpenVINO's CPU
plugin also swaps the calling thread's signal stack while it compiles and puts back, when a
compiled model is freed, the one it found, which may be a freed model's:
:func:`keep_signal_stack` keeps the thread's own, so that a later signal does not crash the
process.

Example:
    >>> model = ExportedModel("model.onnx", runtime="onnxruntime", threads=2)  # doctest: +SKIP
    >>> model(np.zeros((1, *model.input_shape[1:]), np.float32)).shape        # doctest: +SKIP
    (1, 101)
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tcm.errors import TcmError

logger = logging.getLogger(__name__)

RUNTIMES = ("onnxruntime", "openvino")
#: The optional extra that installs each runtime (``pip install 'tcm[EXTRA]'``).
EXTRAS = {"onnxruntime": "export", "openvino": "openvino"}
#: ONNX Runtime's graph optimisation level (see the module docstring).
ORT_OPTIMIZATION = "ORT_ENABLE_ALL"
EXPORTED_SUFFIXES = (".onnx",)


class _SignalStack(ctypes.Structure):
    """``stack_t`` of ``sigaltstack(2)`` on Linux."""

    _fields_ = [
        ("ss_sp", ctypes.c_void_p),
        ("ss_flags", ctypes.c_int),
        ("ss_size", ctypes.c_size_t),
    ]


@contextlib.contextmanager
def keep_signal_stack() -> Iterator[None]:
    """Give the calling thread back its alternate signal stack after the block (Linux).

    OpenVINO's ``compile_model`` installs a signal stack of its own on the calling thread, and
    each compiled model, when freed, reinstalls the stack it replaced. Freed other than last
    made first, the models leave a freed stack installed, and the next signal whose handler
    runs on it (Python's handlers do, ``SA_ONSTACK``; a ``SIGCHLD`` when a subprocess ends)
    kills the process with ``SIGSEGV``. Kept as it was, every model finds and reinstalls the
    thread's own stack."""
    sigaltstack = (
        getattr(ctypes.CDLL(None), "sigaltstack", None) if sys.platform == "linux" else None
    )
    if sigaltstack is None:
        yield
        return
    saved = _SignalStack()
    if sigaltstack(None, ctypes.byref(saved)) != 0:
        yield
        return
    try:
        yield
    finally:
        sigaltstack(ctypes.byref(saved), None)


class RuntimeMissingError(TcmError, ImportError):
    """The runtime asked for is not installed; the message names the extra to install."""


def is_exported_model(path: str | os.PathLike | Any) -> bool:
    """Whether ``path`` names an exported model file (``.onnx``) rather than a checkpoint."""
    return isinstance(path, (str, os.PathLike)) and Path(path).suffix.lower() in EXPORTED_SUFFIXES


def import_runtime(runtime: str):
    """The runtime's Python module, or a :class:`RuntimeMissingError` naming the extra."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose among {', '.join(RUNTIMES)}")
    try:
        if runtime == "onnxruntime":
            import onnxruntime

            return onnxruntime
        import openvino

        return openvino
    except ImportError:
        raise RuntimeMissingError(
            f"the {runtime} runtime is not installed: pip install 'tcm[{EXTRAS[runtime]}]'"
        ) from None


def available_runtimes() -> list[str]:
    """The runtimes of :data:`RUNTIMES` that import here."""
    found = []
    for runtime in RUNTIMES:
        try:
            import_runtime(runtime)
        except RuntimeMissingError:
            continue
        found.append(runtime)
    return found


def read_export_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``FILE.json`` that ``tcm export`` writes beside ``FILE``.

    Raises:
        FileNotFoundError: the model or its ``.json`` is missing.
        ValueError: the ``.json`` is not one of ``tcm export`` (no input shape, frames, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such exported model")
    meta_path = path.with_name(path.name + ".json")
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{meta_path}: missing; an exported model needs the preprocessing file that "
            "tcm export writes beside it"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{meta_path}: not a JSON file ({error})") from None
    needed = ("input", "output", "frames", "input_size", "mean", "std", "num_classes")
    missing = [key for key in needed if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise ValueError(f"{meta_path}: not written by tcm export (no {', '.join(missing)})")
    return meta


def preprocessing_fields(meta: dict[str, Any]) -> dict[str, Any]:
    """The entries of :class:`~tcm.data.Preprocessing` recorded in an export's ``.json``."""
    keys = ("sampling", "dense_stride", "input_size", "resize", "mean", "std")
    return {"num_segments": meta["frames"], **{k: meta[k] for k in keys if k in meta}}


def _check_input(meta_path: Path, name: str, shape: list, meta: dict[str, Any]) -> None:
    """The model's input against the ``.json``: same name, same ``(T, 3, S, S)``."""
    expected = meta["input"]
    want = [meta["frames"], 3, meta["input_size"], meta["input_size"]]
    have = [int(d) if isinstance(d, (int, np.integer)) and int(d) > 0 else None for d in shape]
    if name != expected.get("name") or len(have) != 5 or have[1:] != want:
        raise ValueError(
            f"{meta_path} does not describe its model: the .json says input "
            f"{expected.get('name')!r} (N, {', '.join(map(str, want))}), the model takes "
            f"{name!r} {tuple(d if d is not None else 'N' for d in have)}"
        )


class ExportedModel:
    """An exported ONNX model and its ``.json``, run by ONNX Runtime or OpenVINO on the CPU.

    Args:
        path: ``model.onnx`` (``model.onnx.json`` beside it).
        runtime: ``"onnxruntime"`` or ``"openvino"``.
        threads: CPU threads of the runtime (default: its own choice, all cores).

    Attributes:
        meta: the ``.json``.
        input_shape: ``("N", T, 3, S, S)``.
        num_classes: ``K``.

    Raises:
        FileNotFoundError, ValueError: see :func:`read_export_metadata`; the model's input
            differs from the ``.json``.
        RuntimeMissingError: the runtime is not installed.
    """

    def __init__(
        self, path: str | os.PathLike, runtime: str = "onnxruntime", threads: int | None = None
    ) -> None:
        self.path = Path(path)
        self.runtime = runtime
        self.meta = read_export_metadata(self.path)
        module = import_runtime(runtime)
        self.input_name = self.meta["input"]["name"]
        self.output_name = self.meta["output"]["name"]
        self.num_classes = int(self.meta["num_classes"])
        self.input_shape = (
            "N",
            self.meta["frames"],
            3,
            self.meta["input_size"],
            self.meta["input_size"],
        )
        meta_path = self.path.with_name(self.path.name + ".json")
        if runtime == "onnxruntime":
            self._run = self._onnxruntime(module, threads, meta_path)
        else:
            self._run = self._openvino(module, threads, meta_path)
        logger.debug("%s: running with %s", self.path, runtime)

    def _onnxruntime(self, ort, threads: int | None, meta_path: Path):
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_OPTIMIZATION)
        if threads:
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: onnxruntime cannot load it ({error})") from None
        (first,) = session.get_inputs()[:1]
        _check_input(meta_path, first.name, first.shape, self.meta)

        def run(clips: np.ndarray) -> np.ndarray:
            (logits,) = session.run([self.output_name], {self.input_name: clips})
            return logits

        return run

    def _openvino(self, ov, threads: int | None, meta_path: Path):
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
        except Exception as error:  # openvino raises RuntimeError with the parser's text
            raise ValueError(f"{self.path}: openvino cannot read it ({error})") from None
        port = model.inputs[0]
        shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
        _check_input(meta_path, port.get_any_name(), shape, self.meta)
        # f32: on CPUs with bf16 units OpenVINO otherwise computes in bf16 (logits 5e-2 off).
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        with keep_signal_stack():
            compiled = core.compile_model(model, "CPU", config)
        request = compiled.create_infer_request()
        output = compiled.output(0)

        def run(clips: np.ndarray) -> np.ndarray:
            return np.array(request.infer({0: clips})[output], copy=True)

        return run

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        """Logits of normalised clips: float32 ``(N, T, 3, S, S)`` -> ``(N, K)``."""
        clips = np.ascontiguousarray(clips, dtype=np.float32)
        if clips.ndim != 5 or list(clips.shape[1:]) != list(self.input_shape[1:]):
            raise ValueError(
                f"{self.path} takes clips (N, {', '.join(map(str, self.input_shape[1:]))}), "
                f"got {tuple(clips.shape)}"
            )
        return self._run(clips)

    def __repr__(self) -> str:
        return f"ExportedModel({self.path}, runtime={self.runtime}, input={self.input_shape})"
