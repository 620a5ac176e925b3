"""Models: 2D backbones (ResNet, MobileNetV2, a user's own), the temporal shift and TCM as
plug-ins, the recognizer, the registry.

Importing this package registers every model (see :func:`list_models`).
"""

from __future__ import annotations

from tcm.models import zoo  # noqa: F401  (registers the models)
from tcm.models.compiled import compile_model
from tcm.models.convert import check_state_dict, convert_official_checkpoint
from tcm.models.from_checkpoint import model_from_checkpoint
from tcm.models.mobilenetv2 import InvertedResidual, MobileNetV2
from tcm.models.plugin import add_tcm, add_temporal_shift, shifted_layers, tcm_layers
from tcm.models.recognizer import VideoRecognizer
from tcm.models.registry import create_model, list_models, register_model
from tcm.models.resnet import BasicBlock, Bottleneck, ResNet
from tcm.utils.imagenet import IMAGENET_MEAN, IMAGENET_STD

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
    "compile_model",
    "convert_official_checkpoint",
    "create_model",
    "list_models",
    "model_from_checkpoint",
    "register_model",
    "shifted_layers",
    "tcm_layers",
]
