"""Classify videos with a trained checkpoint.

Example:
    >>> import tcm
    >>> predictor = tcm.Predictor("runs/tcm/best.pt")              # doctest: +SKIP
    >>> prediction = predictor.predict("clip.mp4", topk=3)         # doctest: +SKIP
    >>> prediction.top[0].label, round(prediction.top[0].probability, 3)  # doctest: +SKIP
    ('arm wrestling', 0.912)
    >>> for p in predictor.predict_many(["a.mp4", "frames/b", "broken.mp4"]):  # doctest: +SKIP
    ...     print(p.path, p.top[0].label if p.ok else f"failed: {p.error}")
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tcm.data.bad_video import BadVideoError
from tcm.data.preprocessing import Preprocessing
from tcm.deploy.inputs import read_clip, to_model_input
from tcm.utils.devices import pick_device

logger = logging.getLogger(__name__)

# Errors that mean "this input cannot be read": the readers wrap every failure of PyAV, PIL
# and the file system into BadVideoError. Anything else raised while reading or classifying
# (a RuntimeError of the model, a ValueError of a transform) is a bug and propagates.
READ_ERRORS = (BadVideoError,)
UNREADABLE = "unreadable"


@dataclass(frozen=True)
class ClassScore:
    """One entry of a top-k list: class name, index and softmax probability."""

    label: str
    index: int
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "index": self.index, "probability": self.probability}


@dataclass
class Prediction:
    """The result for one input.

    Attributes:
        path: the input (video file or frame folder).
        top: the ``topk`` most probable classes, most probable first; empty when it failed.
        error: why the input could not be classified (``None`` when it was): the reason of the
            :class:`~tcm.data.bad_video.BadVideoError` (``"missing"``, ``"truncated"``, ...).
        message: the full error message, when it failed.
    """

    path: str
    top: list[ClassScore] = field(default_factory=list)
    error: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """``{"path", "top": [{"label", "index", "probability"}]}``, or ``{"path", "error",
        "message"}`` for a failed input."""
        if not self.ok:
            return {"path": self.path, "error": self.error, "message": self.message}
        return {"path": self.path, "top": [score.to_dict() for score in self.top]}


class Predictor:
    """A model loaded from a project checkpoint, with the checkpoint's test preprocessing; or
    an exported ONNX model with the preprocessing of its ``.json``.

    Args:
        checkpoint: path of a project checkpoint (``tcm train`` / ``tcm convert`` output) or
            the loaded dict; or ``model.onnx`` as ``tcm export`` writes it (its ``.json``
            beside it).
        device: where a checkpoint's model runs (exported models run on the CPU).
        runtime: ``"torch"`` (checkpoints), ``"onnxruntime"`` or ``"openvino"`` (exported
            models); default: ``torch`` for a checkpoint, ``onnxruntime`` for ``.onnx``.
        threads: CPU threads of ONNX Runtime or OpenVINO (default: theirs).
        allow_modules: modules the checkpoint's backbone may be imported from, for a model
            on a user's own backbone (:mod:`tcm.models.from_checkpoint`); a checkpoint
            never imports code otherwise.

    Attributes:
        model: the :class:`~tcm.models.VideoRecognizer`, in eval mode (``None`` for an
            exported model).
        exported: the :class:`~tcm.runtime.ExportedModel` (``None`` for a checkpoint).
        classes: class names (from the checkpoint; ``"0"``, ``"1"``, ... when it has none).
        preprocessing: a :class:`~tcm.data.Preprocessing`.

    Example:
        >>> predictor = Predictor("best.pt", device="cpu")             # doctest: +SKIP
        >>> predictor.predict("clip.mp4").top[0]                       # doctest: +SKIP
        ClassScore(label='arm wrestling', index=6, probability=0.91)
        >>> predictor.predict_clips(torch.randn(2, 8, 3, 224, 224)).shape  # doctest: +SKIP
        torch.Size([2, 400])
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike | dict,
        device: str | torch.device = "cpu",
        *,
        allow_modules: Iterable[str] = (),
        runtime: str | None = None,
        threads: int | None = None,
    ):
        from tcm.runtime import RUNTIMES, is_exported_model

        exported = is_exported_model(checkpoint)
        runtime = runtime or ("onnxruntime" if exported else "torch")
        if runtime not in (*RUNTIMES, "torch"):
            raise ValueError(
                f"unknown runtime {runtime!r}; choose among torch, {', '.join(RUNTIMES)}"
            )
        if exported != (runtime != "torch"):
            raise ValueError(
                f"{checkpoint}: runtime {runtime} runs "
                + (
                    "tcm checkpoints; an exported .onnx runs with onnxruntime or openvino"
                    if runtime == "torch"
                    else "exported .onnx files (tcm export --format onnx)"
                )
            )
        self.runtime = runtime
        self.exported = None
        if exported:
            self._load_exported(checkpoint, runtime, threads)
            return
        from tcm.models import model_from_checkpoint

        self.device = pick_device(device, setting="--device")
        model, checkpoint = model_from_checkpoint(checkpoint, allow_modules=allow_modules)
        self.model = model.to(self.device).eval()
        self.checkpoint = checkpoint
        self.preprocessing = Preprocessing.from_checkpoint(checkpoint)
        num_classes = checkpoint["model"]["num_classes"]
        classes = checkpoint.get("classes")
        self.classes = list(classes) if classes else [str(i) for i in range(num_classes)]

    def _load_exported(self, path: str | os.PathLike, runtime: str, threads: int | None) -> None:
        """An exported model (:class:`~tcm.runtime.ExportedModel`) and its ``.json``."""
        from tcm.runtime import ExportedModel, preprocessing_fields

        self.exported = ExportedModel(path, runtime, threads=threads)
        meta = self.exported.meta
        self.device = torch.device("cpu")
        self.model = None
        self.checkpoint = {
            "model": {"name": meta.get("model", "?"), "num_classes": meta["num_classes"]}
        }
        self.preprocessing = Preprocessing.from_dict(preprocessing_fields(meta))
        classes = meta.get("classes")
        self.classes = list(classes) if classes else [str(i) for i in range(meta["num_classes"])]

    def load(self, path: str | os.PathLike) -> torch.Tensor:
        """Read one input as the model expects it: normalised float32 ``(V*T, 3, S, S)``.

        Raises:
            BadVideoError: the input cannot be read.
        """
        return to_model_input(read_clip(path, self.preprocessing), self.preprocessing)

    @torch.no_grad()
    def predict_clips(self, clips: torch.Tensor) -> torch.Tensor:
        """Class probabilities of a batch of prepared clips.

        Args:
            clips: ``(N, V*T, 3, S, S)`` normalised (as from :meth:`load`, stacked).

        Returns:
            ``(N, K)`` softmax probabilities, on the CPU.
        """
        if self.exported is not None:
            logits = torch.from_numpy(self.exported(clips.numpy()))  # (N, K)
        else:
            logits = self.model(clips.to(self.device))  # (N, K)
        return logits.float().softmax(dim=1).cpu()

    def _top(self, probabilities: torch.Tensor, topk: int) -> list[ClassScore]:
        k = max(1, min(topk, probabilities.numel()))
        values, indices = probabilities.topk(k)
        return [
            ClassScore(self.classes[i], int(i), float(p))
            for p, i in zip(values.tolist(), indices.tolist())
        ]

    def predict(self, path: str | os.PathLike, topk: int = 5) -> Prediction:
        """Top-``topk`` classes of one video file or frame folder.

        Raises:
            BadVideoError: the input cannot be read (use :meth:`predict_many` to go on
                past bad inputs).
            ValueError: ``topk`` is not positive.
        """
        _check_topk(topk)
        clip = self.load(path)
        probabilities = self.predict_clips(clip[None])[0]
        return Prediction(str(path), self._top(probabilities, topk))

    def predict_many(
        self,
        paths: Iterable[str | os.PathLike],
        topk: int = 5,
        batch_size: int = 4,
        on_result: Callable[[Prediction], None] | None = None,
    ) -> Iterator[Prediction]:
        """Classify several inputs, ``batch_size`` clips per forward pass, in input order.

        An input that cannot be read gives a :class:`Prediction` with ``error`` set; the
        others go on.

        Args:
            paths: video files and frame folders (see :func:`~tcm.deploy.inputs.expand_inputs`
                to expand folders of videos).
            topk: classes per prediction.
            batch_size: clips per forward pass.
            on_result: called with every prediction as it is made (e.g. to advance a
                progress bar).

        Yields:
            One :class:`Prediction` per path, in order.
        """
        _check_topk(topk)
        pending: list[tuple[str, torch.Tensor | None, Exception | None]] = []

        def flush() -> Iterator[Prediction]:
            good = [clip for _, clip, _ in pending if clip is not None]
            probabilities = iter(self.predict_clips(torch.stack(good)) if good else [])
            for path, clip, error in pending:
                if clip is None:
                    reason = getattr(error, "reason", UNREADABLE)
                    prediction = Prediction(path, error=reason, message=str(error))
                else:
                    prediction = Prediction(path, self._top(next(probabilities), topk))
                if on_result is not None:
                    on_result(prediction)
                yield prediction
            pending.clear()

        for path in paths:
            try:
                pending.append((str(path), self.load(path), None))
            except READ_ERRORS as error:
                logger.debug("%s: %s", path, error)
                pending.append((str(path), None, error))
            if sum(clip is not None for _, clip, _ in pending) >= batch_size:
                yield from flush()
        yield from flush()

    def predict_batch(self, paths: Sequence[str | os.PathLike], topk: int = 5) -> list[Prediction]:
        """:meth:`predict_many` as a list."""
        _check_topk(topk)
        return list(self.predict_many(paths, topk=topk))

    def __repr__(self) -> str:
        name = self.checkpoint["model"]["name"]
        return (
            f"Predictor({name}, {len(self.classes)} classes, runtime={self.runtime}, "
            f"device={self.device}, "
            f"preprocessing={self.preprocessing})"
        )


def _check_topk(topk: int) -> None:
    """A ``ValueError`` for a ``topk`` that is not a positive number of classes (the CLI's
    ``--topk`` rule; more than the classes gives them all)."""
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"topk must be a positive number of classes, got {topk!r}")
