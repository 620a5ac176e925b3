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
- :class:`Predictor` also takes an exported ``model.onnx``, run by ONNX Runtime or OpenVINO
  through :class:`tcm.runtime.ExportedModel` (which loads without PyTorch).

Example:
    >>> from tcm.deploy import Predictor
    >>> predictor = Predictor("best.pt")                     # doctest: +SKIP
    >>> [s.label for s in predictor.predict("clip.mp4", topk=2).top]  # doctest: +SKIP
    ['arm wrestling', 'shaking hands']
"""

from tcm.data.preprocessing import Preprocessing
from tcm.deploy.export import ExportResult, export_checkpoint
from tcm.deploy.inputs import expand_inputs, read_clip
from tcm.deploy.predictor import ClassScore, Prediction, Predictor
from tcm.deploy.tcm_maps import TCMMaps, collect_tcm_maps
from tcm.deploy.timeline import LongVideoPredictor
from tcm.deploy.timeline_plot import render_timeline, write_timeline
from tcm.deploy.timeline_records import BadStretch, Segment, Timeline, WindowPrediction
from tcm.deploy.visualize import visualize
from tcm.deploy.window_plan import Span

__all__ = [
    "BadStretch",
    "ClassScore",
    "ExportResult",
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
