"""int8 exports: an exported ONNX model quantised with calibration clips, and kept only when
it stays as accurate as the float model.

:func:`quantize_export` calibrates the activations of a float ONNX export on clips of a list
file (read with the export's own preprocessing), writes a QDQ model (int8 weights per output
channel and int8 activations around every convolution and matrix product but the
classifier's; ONNX Runtime's static quantisation), and compares top-1 of the float and the
int8 model on the labels of an evaluation list (held-out clips; by default the calibration
list). MTDM (the correlation, its soft-argmax and its channel reduction) stays in float32: its
nodes are those whose name holds :data:`FLOAT_SCOPE`. A QDQ file runs in both runtimes;
OpenVINO turns it into int8 kernels, ONNX Runtime into its own QLinear operators.

Example:
    >>> report = quantize_export("model_fp32.onnx", "model.onnx", "lists/val.txt", "clips")  # doctest: +SKIP
    >>> report.top1_float, report.top1_int8                                                    # doctest: +SKIP
    (91.2, 90.8)
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tcm.runtime import ExportedModel, import_runtime, read_export_metadata

logger = logging.getLogger(__name__)

#: Nodes whose name holds this stay in float32 (torch.onnx names nodes by module path).
FLOAT_SCOPE = "/mtdm/"
#: The classifier (Gemm) stays in float too: it costs little, and OpenVINO (2026.4) returns
#: zeros for every clip of a batch but the first through a quantised Gemm.
QUANTIZED_OPS = ("Conv", "MatMul")
#: Largest loss of top-1 (points) accepted without ``force``.
MAX_TOP1_DROP = 1.0


@dataclass
class QuantizeReport:
    """What :func:`quantize_export` measured: top-1 (%) of the float and the int8 model on
    ``clips`` labelled clips of the evaluation list, and the nodes left in float."""

    clips: int
    top1_float: float
    top1_int8: float
    float_nodes: int
    quantized_nodes: int

    @property
    def drop(self) -> float:
        return self.top1_float - self.top1_int8

    def to_dict(self) -> dict:
        return {
            "type": "int8",
            "method": "onnxruntime static QDQ, per-channel weights, MinMax calibration",
            "clips": self.clips,
            "top1_float": self.top1_float,
            "top1_int8": self.top1_int8,
            "float_scope": FLOAT_SCOPE,
            "float_nodes": self.float_nodes,
            "quantized_nodes": self.quantized_nodes,
        }


def load_clips(list_file: str | os.PathLike, root: str | os.PathLike, meta: dict):
    """The clips of a list file, prepared as the export's ``.json`` says: normalised float32
    ``(N, T, 3, S, S)`` and labels ``(N,)``, all in memory (a few hundred 224-px clips take
    about 1 GB).

    Raises:
        ValueError: a clip cannot be read (named, with the count of unreadable ones), or the
            list is empty.
    """
    from tcm.data.annotations import read_list
    from tcm.data.preprocessing import Preprocessing
    from tcm.deploy.inputs import read_clip, to_model_input
    from tcm.deploy.predictor import READ_ERRORS
    from tcm.runtime import preprocessing_fields

    records = read_list(list_file)
    if not records:
        raise ValueError(f"{list_file}: no clip listed")
    prep = Preprocessing.from_dict(preprocessing_fields(meta))
    clips, labels, bad = [], [], []
    for record in records:
        try:
            clip = read_clip(Path(root) / record.path, prep)
        except READ_ERRORS as error:
            bad.append(f"{list_file}:{record.line}: {error}")
            continue
        clips.append(to_model_input(clip, prep).numpy())
        labels.append(record.label)
    if bad:
        raise ValueError(f"{len(bad)} of {len(records)} clips are unreadable: {bad[0]}")
    return np.stack(clips), np.array(labels)


def _top1(model: ExportedModel, clips: np.ndarray, labels: np.ndarray, batch: int = 8) -> float:
    hits = 0
    for start in range(0, len(clips), batch):
        logits = model(clips[start : start + batch])
        hits += int((logits.argmax(axis=1) == labels[start : start + batch]).sum())
    return 100.0 * hits / len(clips)


def quantize_export(
    source: str | os.PathLike,
    out: str | os.PathLike,
    calibration: str | os.PathLike,
    root: str | os.PathLike,
    *,
    force: bool = False,
    max_drop: float = MAX_TOP1_DROP,
    threads: int | None = None,
    evaluation: str | os.PathLike | None = None,
) -> QuantizeReport:
    """Quantise the float export ``source`` (with its ``.json``) to ``out`` (and its ``.json``).

    Args:
        source: a float ``model.onnx`` from :func:`~tcm.deploy.export.export_checkpoint`.
        out: the int8 model to write; its ``.json`` is the source's plus ``"quantization"``.
        calibration: a list file of labelled clips (``path label`` lines) under ``root``:
            the activations' ranges are calibrated on them.
        root: the folder the list files' paths are relative to.
        force: keep an int8 model that loses more than ``max_drop`` points of top-1.
        threads: CPU threads of the runtime.
        evaluation: a list file of labelled clips under ``root`` that top-1 is compared on;
            ``None``: the calibration clips.

    Raises:
        ValueError: an unreadable calibration clip; an int8 model that loses more than
            ``max_drop`` points without ``force`` (nothing is written then).
        RuntimeMissingError: onnxruntime is not installed.
    """
    import_runtime("onnxruntime")
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    source, out = Path(source), Path(out)
    meta = read_export_metadata(source)
    clips, labels = load_clips(calibration, root, meta)
    evaluation = evaluation or calibration
    if Path(evaluation) != Path(calibration):
        clips_eval, labels_eval = load_clips(evaluation, root, meta)
    else:
        clips_eval, labels_eval = clips, labels
    graph = onnx.load(str(source)).graph
    excluded = [node.name for node in graph.node if FLOAT_SCOPE in node.name]
    quantized = sum(
        node.op_type in QUANTIZED_OPS and node.name not in excluded for node in graph.node
    )

    class Clips(CalibrationDataReader):
        def __init__(self) -> None:
            self._items: Iterator = iter(clips[i : i + 1] for i in range(len(clips)))

        def get_next(self):
            batch = next(self._items, None)
            return None if batch is None else {meta["input"]["name"]: batch}

    staged = out.with_name(out.name + ".partial")
    # onnxruntime.quantization advises on the root logger (pre-processing, biases computed
    # in the graph); nothing the user can act on.
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(max(level, logging.ERROR))
    try:
        quantize_static(
            str(source),
            str(staged),
            Clips(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
        )
    finally:
        root_logger.setLevel(level)
    staged_meta = staged.with_name(staged.name + ".json")
    shutil.copyfile(source.with_name(source.name + ".json"), staged_meta)
    try:
        models = (ExportedModel(path, "onnxruntime", threads) for path in (source, staged))
        top1_float, top1_int8 = (_top1(m, clips_eval, labels_eval) for m in models)
        report = QuantizeReport(len(clips_eval), top1_float, top1_int8, len(excluded), quantized)
        if report.drop > max_drop and not force:
            raise ValueError(
                f"the int8 model loses {report.drop:.1f} points of top-1 on {evaluation} "
                f"({top1_float:.1f} -> {top1_int8:.1f} %, {report.clips} clips), more than "
                f"{max_drop:g}: not written (--force keeps it)"
            )
        import json

        meta["quantization"] = report.to_dict()
        staged_meta.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.replace(staged, out)
        os.replace(staged_meta, out.with_name(out.name + ".json"))
    finally:
        for path in (staged, staged_meta):
            path.unlink(missing_ok=True)
    logger.info(
        "%s: int8, top-1 %.1f -> %.1f %% on %d clips of %s",
        *(out, top1_float, top1_int8, report.clips, evaluation),
    )
    return report
