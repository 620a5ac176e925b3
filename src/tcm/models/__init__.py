"""Models: 2D backbones (ResNet, MobileNetV2, a user's own), the temporal shift and TCM as
plug-ins, the recognizer, the registry.

Importing this package registers every model (see :func:`list_models`).
"""

from __future__ import annotations

from tcm.checkpoint import load_checkpoint
from tcm.models import zoo  # noqa: F401  (registers the models)
from tcm.models.convert import check_state_dict, convert_official_checkpoint
from tcm.models.mobilenetv2 import InvertedResidual, MobileNetV2
from tcm.models.plugin import add_tcm, add_temporal_shift, shifted_layers, tcm_layers
from tcm.models.recognizer import VideoRecognizer
from tcm.models.registry import create_model, list_models, register_model
from tcm.models.resnet import BasicBlock, Bottleneck, ResNet
from tcm.utils.imagenet import IMAGENET_MEAN, IMAGENET_STD


def model_from_checkpoint(checkpoint: dict | str) -> tuple[VideoRecognizer, dict]:
    """Build the model a project checkpoint describes and load its weights strictly.

    Args:
        checkpoint: a path, or a dict from :func:`tcm.checkpoint.load_checkpoint`.

    Returns:
        ``(model, checkpoint)`` with the model in eval mode.
    """
    if not isinstance(checkpoint, dict):
        checkpoint = load_checkpoint(checkpoint)
    spec = checkpoint["model"]
    model = create_model(
        spec["name"], spec["num_classes"], spec["num_segments"], **spec.get("kwargs", {})
    )
    check_state_dict(checkpoint["state_dict"], model.state_dict())
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BasicBlock",
    "Bottleneck",
    "InvertedResidual",
    "MobileNetV2",
    "ResNet",
    "VideoRecognizer",
    "add_tcm",
    "add_temporal_shift",
    "check_state_dict",
    "convert_official_checkpoint",
    "create_model",
    "list_models",
    "model_from_checkpoint",
    "register_model",
    "shifted_layers",
    "tcm_layers",
]
