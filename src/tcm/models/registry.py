"""Model registry: names to builders, ``create_model`` and ``list_models``."""

from __future__ import annotations

from collections.abc import Callable

from tcm.models.recognizer import VideoRecognizer

_MODELS: dict[str, Callable[..., VideoRecognizer]] = {}


def register_model(builder: Callable[..., VideoRecognizer]) -> Callable[..., VideoRecognizer]:
    """Decorator adding a builder under its function name.

    Raises:
        ValueError: a model of that name is registered already (a second builder would
            otherwise replace the first without a word).
    """
    name = builder.__name__
    if name in _MODELS:
        first = _MODELS[name]
        raise ValueError(
            f"model {name!r} is registered already (by {first.__module__}.{first.__qualname__}); "
            f"rename the builder {builder.__module__}.{builder.__qualname__}"
        )
    _MODELS[name] = builder
    return builder


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_MODELS)


def create_model(name: str, num_classes: int, num_segments: int = 8, **kwargs) -> VideoRecognizer:
    """Build a registered model.

    Args:
        name: one of :func:`list_models`, e.g. ``"tcm_tsm_resnet50"``, or the import path of a
            user's backbone, ``"package.module:Name"`` (:mod:`tcm.models.custom`).
        num_classes: number of output classes ``K``.
        num_segments: frames per clip ``T``.
        **kwargs: model options: ``dropout``, ``pretrained`` (path or URL of ImageNet weights
            or of a TSM/TCM release checkpoint, for the backbone), ``tcm_stages`` (layer
            names), ``patch_size``, ``temperature``, ``sigma``, ``reduced_channels``,
            ``shift_fold_div``, ``shift_blocks``; ResNets: ``widths``, ``stem_width``.

    Returns:
        A :class:`~tcm.models.recognizer.VideoRecognizer`: ``(N, T, 3, H, W)`` -> ``(N, K)``.

    Example:
        >>> model = create_model("tcm_tsm_resnet50", num_classes=174, num_segments=8)
        >>> model(torch.randn(1, 8, 3, 224, 224)).shape
        torch.Size([1, 174])
    """
    from tcm.models.custom import build_custom_model, is_import_path

    if name not in _MODELS and not is_import_path(name):
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if num_segments < 1:
        raise ValueError(f"num_segments must be positive, got {num_segments}")
    if is_import_path(name):
        return build_custom_model(
            name, num_classes=num_classes, num_segments=num_segments, **kwargs
        )
    return _MODELS[name](num_classes=num_classes, num_segments=num_segments, **kwargs)
