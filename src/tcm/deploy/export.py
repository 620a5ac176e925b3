"""Export a checkpoint to ONNX or TorchScript, check it against PyTorch, record preprocessing.

The exported model takes a normalised clip batch ``clip`` float32 ``(N, T, 3, S, S)`` (any
``N``; ``T`` and ``S`` as recorded) and returns ``logits`` ``(N, K)``. Preprocessing (frames,
sampling, resize, crop size, mean, std) and class names are written beside the model as
``FILE.json`` (``model.onnx`` -> ``model.onnx.json``); a TorchScript file also carries them
inside, as the extra file ``preprocessing.json``.

MTDM's fields are one operator, ``tcm::mtdm_fields`` (:mod:`tcm.ops.operators`): a TorchScript
file calls it (loading one needs ``tcm`` imported), and ONNX files hold its plain form in
standard operators (:mod:`tcm.ops.onnx`), for any batch size.

Example:
    >>> from tcm.deploy import export_checkpoint
    >>> result = export_checkpoint("runs/tcm/best.pt", "tcm.onnx", "onnx")  # doctest: +SKIP
    >>> result.max_abs_diff < 1e-4                                          # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import tcm
import tcm.ops
from tcm.data.preprocessing import Preprocessing
from tcm.ops.onnx import register_onnx_symbolics
from tcm.utils.files import check_output_file

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
INPUT_NAME = "clip"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17
ONNX_EXPORTERS = ("torchscript", "dynamo")
# Opsets torch.onnx's TorchScript-based exporter writes (the dynamo exporter writes 18 and up).
MIN_OPSET, MAX_OPSET = 7, 20


def export_metadata(checkpoint: dict[str, Any], fmt: str, **extra: Any) -> dict[str, Any]:
    """What a consumer of the exported model needs to feed it and read its output."""
    prep = Preprocessing.from_checkpoint(checkpoint)
    spec = checkpoint["model"]
    frames = prep.num_segments
    classes = checkpoint.get("classes")
    return {
        "format": fmt,
        "model": spec["name"],
        "num_classes": spec["num_classes"],
        "input": {
            "name": INPUT_NAME,
            "shape": ["N", frames, 3, prep.input_size, prep.input_size],
            "dtype": "float32",
            "layout": "(N, T, 3, H, W), RGB, (pixel / 255 - mean) / std",
        },
        "output": {"name": OUTPUT_NAME, "shape": ["N", spec["num_classes"]], "kind": "logits"},
        "frames": frames,
        "input_size": prep.input_size,
        "resize": prep.resize,
        "sampling": prep.sampling,
        "dense_stride": prep.dense_stride,
        "mean": list(prep.mean),
        "std": list(prep.std),
        "classes": list(classes) if classes is not None else None,
        "tcm_version": tcm.__version__,
        **extra,
    }


@dataclass
class ExportResult:
    """Outcome of :func:`export_checkpoint`.

    Attributes:
        path: the exported model.
        metadata_path: its preprocessing and classes (``FILE.json``).
        max_abs_diff: largest ``|exported - PyTorch|`` over the logits of the check input.
        max_abs_logit: largest ``|logit|`` of PyTorch on the check input (scale of the above).
        check_batch: batch size of the check input (differs from the export batch, so the check
            also covers the dynamic batch).
        exporter: how the file was made (``"torch.jit.trace"``, ``"torch.onnx (dynamo=False)"``).
    """

    path: Path
    metadata_path: Path
    max_abs_diff: float
    max_abs_logit: float
    check_batch: int
    exporter: str


def _example_input(prep: Preprocessing, batch: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, prep.num_segments, 3, prep.input_size, prep.input_size)
    return torch.randn(shape, generator=generator)  # (N, T, 3, S, S), like normalised pixels


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence warnings of the exporters that say nothing about this model: TorchScript's
    deprecation notices (torch >= 2.9), trace-time evaluation of the Python shape checks (as
    intended), and the ONNX constant folder skipping strided slices."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r"Constant folding - Only steps=1")
        # The TorchScript-based ONNX exporter is deprecated since torch 2.9; it is still the
        # default here (closest parity), and --onnx-exporter dynamo selects the new one.
        warnings.filterwarnings("ignore", message=r"You are using the legacy TorchScript-based")
        warnings.filterwarnings("ignore", message=r"The feature will be removed")
        yield


def load_torchscript(path: str | os.PathLike, extra_files: dict[str, str] | None = None):
    """``torch.jit.load`` on the CPU; fills ``extra_files`` (e.g. ``{"preprocessing.json": ""}``)."""
    with _quiet_export():
        return torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files or {})


def export_torchscript(model: torch.nn.Module, example: torch.Tensor, out: Path, meta: dict):
    """Trace ``model`` on ``example`` , freeze (BN folded
    into convs) and save it with ``meta`` as the extra file ``preprocessing.json``."""
    with torch.no_grad(), _quiet_export():
        traced = torch.jit.trace(model, example, check_trace=False)
        traced = torch.jit.freeze(traced)
        extra = {"preprocessing.json": json.dumps(meta)}
        torch.jit.save(traced, str(out), _extra_files=extra)
    return "torch.jit.trace"


def export_onnx(
    model: torch.nn.Module,
    example: torch.Tensor,
    out: Path,
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
) -> str:
    """Export ``model`` to ONNX with a dynamic batch dimension.

    Args:
        exporter: ``"torchscript"`` (``torch.onnx.export(dynamo=False)``, the default: the
            closest parity) or ``"dynamo"`` (``torch.export``-based). Both convert this model
            with a dynamic batch, MTDM's operator in standard ONNX operators.
    """
    _require_onnx()
    if exporter not in ONNX_EXPORTERS:
        raise ValueError(f"unknown ONNX exporter {exporter!r}; choose among {ONNX_EXPORTERS}")
    with torch.no_grad(), _quiet_export():
        if exporter == "dynamo":
            # Two clips: an example batch of 1 would be taken for a constant.
            program = torch.export.export(
                model,
                (torch.cat([example, example]),),
                dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=1024)}},
            ).run_decompositions(tcm.ops.decompositions())
            torch.onnx.export(
                program,
                (example,),
                str(out),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=max(opset, 18),
                external_data=False,
                verbose=False,
            )
            return f"torch.onnx (dynamo=True, opset {max(opset, 18)})"
        register_onnx_symbolics(opset)
        try:
            torch.onnx.export(
                model,
                (example,),
                str(out),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
            )
        except torch.onnx.errors.UnsupportedOperatorError as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ValueError(
                f"ONNX opset {opset} cannot express this model ({first}); the default is "
                f"{DEFAULT_OPSET}"
            ) from None
    return f"torch.onnx (dynamo=False, opset {opset})"


def check_export_target(out: str | os.PathLike, source: str | os.PathLike | None = None) -> Path:
    """``out`` if an export may be written there (and its ``.json`` beside it).

    Raises:
        OutputError: ``out`` is a folder, is the checkpoint ``source``, or either file is
            an existing tcm checkpoint (which the export would replace), or cannot be written.
    """
    inputs = {source: "the checkpoint being exported"} if source is not None else {}
    out = check_output_file(out, "--out", inputs=inputs)
    check_output_file(out.with_name(out.name + ".json"), "--out", inputs=inputs)
    return out


def _require_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise ImportError(
            "ONNX export needs the optional packages onnx and onnxruntime: "
            "pip install 'tcm[export]'"
        ) from error
    return onnx, onnxruntime


def onnx_session(path: str | os.PathLike, threads: int | None = None, level: str | None = None):
    """An onnxruntime CPU session for ``path`` (``threads``: intra-op threads, default all;
    ``level``: a ``GraphOptimizationLevel`` name, default the one tcm predict runs at,
    :data:`tcm.runtime.ORT_OPTIMIZATION`, so that the export's check holds for it)."""
    from tcm.runtime import ORT_OPTIMIZATION

    _, ort = _require_onnx()
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, level or ORT_OPTIMIZATION
    )
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_exported(path: Path, fmt: str, clips: torch.Tensor) -> torch.Tensor:
    """Logits of an exported model on ``clips`` ``(N, T, 3, S, S)`` -> ``(N, K)``."""
    if fmt == "onnx":
        session = onnx_session(path)
        (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: clips.numpy()})
        return torch.from_numpy(logits)
    module = load_torchscript(path)
    with torch.no_grad():
        return module(clips)


def export_checkpoint(
    checkpoint: str | os.PathLike | dict,
    out: str | os.PathLike,
    fmt: str,
    *,
    opset: int = DEFAULT_OPSET,
    onnx_exporter: str = "torchscript",
    check_batch: int = 2,
    seed: int = 0,
    allow_modules: Iterable[str] = (),
) -> ExportResult:
    """Export a project checkpoint and check the file against PyTorch.

    The model is exported with batch 1 and checked with ``check_batch`` random clips, so the
    check covers the dynamic batch too. PyTorch's side of the check runs the model as trained
    (with :func:`tcm.ops.local_correlation`).

    Args:
        checkpoint: path of a project checkpoint, or the loaded dict.
        out: file to write (``.onnx`` / ``.pt``); ``out + ".json"`` gets the preprocessing.
        fmt: ``"onnx"`` or ``"torchscript"``.
        opset: ONNX opset.
        onnx_exporter: ``"torchscript"`` or ``"dynamo"`` (see :func:`export_onnx`).
        check_batch: clips in the check input.
        seed: seed of the random inputs.
        allow_modules: modules a user's backbone may be imported from
            (:mod:`tcm.models.from_checkpoint`).

    Returns:
        An :class:`ExportResult` with the largest difference found.

    Raises:
        OutputError: ``out`` is a folder, the checkpoint itself, or another tcm checkpoint.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose among {FORMATS}")
    if fmt == "onnx":
        _require_onnx()
        if not MIN_OPSET <= opset <= MAX_OPSET:
            raise ValueError(
                f"ONNX opset {opset} is not one torch.onnx writes ({MIN_OPSET} to {MAX_OPSET}); "
                f"the default is {DEFAULT_OPSET}"
            )
    source = None if isinstance(checkpoint, dict) else checkpoint
    out = check_export_target(out, source)
    model, checkpoint = tcm.model_from_checkpoint(checkpoint, allow_modules=allow_modules)
    model = model.float().eval()
    prep = Preprocessing.from_checkpoint(checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = export_metadata(checkpoint, fmt, source=str(checkpoint.get("source", "")) or None)
    example = _example_input(prep, 1, seed)
    if fmt == "onnx":
        exporter = export_onnx(model, example, out, opset, onnx_exporter)
    else:
        exporter = export_torchscript(model, example, out, meta)
    meta["exporter"] = exporter
    metadata_path = out.with_name(out.name + ".json")
    metadata_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    clips = _example_input(prep, check_batch, seed + 1)
    with torch.no_grad():
        expected = model(clips)
    got = run_exported(out, fmt, clips)
    if got.shape != expected.shape:
        raise RuntimeError(
            f"exported model returned {tuple(got.shape)}, PyTorch {tuple(expected.shape)}"
        )
    diff = (got - expected).abs().max().item()
    logger.info("%s: largest |exported - PyTorch| = %.3g over %d clips", out, diff, check_batch)
    return ExportResult(
        path=out,
        metadata_path=metadata_path,
        max_abs_diff=diff,
        max_abs_logit=expected.abs().max().item(),
        check_batch=check_batch,
        exporter=exporter,
    )
