"""Deployment: classify videos, export models, and look at what TCM computes.

- :class:`Predictor` (:mod:`~tcm.deploy.predictor`): a checkpoint's model with its test
  preprocessing; ``predict(path)`` and ``predict_many(paths)``.
- :func:`export_checkpoint` (:mod:`~tcm.deploy.export`): ONNX / TorchScript with a dynamic
  batch, checked against PyTorch, preprocessing recorded beside the file.
- :func:`visualize` (:mod:`~tcm.deploy.visualize`): TCM's fast and slow displacement fields,
  their confidence and TAM's temporal attention, as a PNG or GIF.
- :class:`LongVideoPredictor` (:mod:`~tcm.deploy.timeline`): sliding windows over long videos
  and live streams, decoded once in constant memory, merged into segments; drawn as a
  timeline by :func:`write_timeline` (:mod:`~tcm.deploy.timeline_plot`).
- :class:`ExportedModel` (:mod:`~tcm.deploy.runtime`): an exported ONNX model run by ONNX
  Runtime or OpenVINO, without PyTorch; :class:`Predictor` takes ``model.onnx`` too.

Example:
    >>> from tcm.deploy import Predictor
    >>> predictor = Predictor("best.pt")                     # doctest: +SKIP
    >>> [s.label for s in predictor.predict("clip.mp4", topk=2).top]  # doctest: +SKIP
    ['arm wrestling', 'shaking hands']
"""

import importlib

# Public name -> module that defines it, imported on first use: ``tcm.deploy.runtime`` (ONNX
# Runtime / OpenVINO, NumPy only) loads without PyTorch.
_EXPORTS = {
    "BadStretch": "tcm.deploy.timeline_records",
    "ClassScore": "tcm.deploy.predictor",
    "ExportResult": "tcm.deploy.export",
    "ExportedModel": "tcm.deploy.runtime",
    "LongVideoPredictor": "tcm.deploy.timeline",
    "Prediction": "tcm.deploy.predictor",
    "Predictor": "tcm.deploy.predictor",
    "Preprocessing": "tcm.data.preprocessing",
    "Segment": "tcm.deploy.timeline_records",
    "Span": "tcm.deploy.window_plan",
    "TCMMaps": "tcm.deploy.tcm_maps",
    "Timeline": "tcm.deploy.timeline_records",
    "WindowPrediction": "tcm.deploy.timeline_records",
    "collect_tcm_maps": "tcm.deploy.tcm_maps",
    "expand_inputs": "tcm.deploy.inputs",
    "export_checkpoint": "tcm.deploy.export",
    "read_clip": "tcm.deploy.inputs",
    "render_timeline": "tcm.deploy.timeline_plot",
    "visualize": "tcm.deploy.visualize",
    "write_timeline": "tcm.deploy.timeline_plot",
}

__all__ = [
    "BadStretch",
    "ClassScore",
    "ExportResult",
    "ExportedModel",
    "LongVideoPredictor",
    "Prediction",
    "Predictor",
    "Preprocessing",
    "Segment",
    "Span",
    "TCMMaps",
    "Timeline",
    "WindowPrediction",
    "collect_tcm_maps",
    "expand_inputs",
    "export_checkpoint",
    "read_clip",
    "render_timeline",
    "visualize",
    "write_timeline",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tcm.deploy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
