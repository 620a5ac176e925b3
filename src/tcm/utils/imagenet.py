"""The ImageNet colour statistics: the ``mean`` and ``std`` of 0..1 RGB pixels that
ImageNet-pretrained backbones expect, and so the default normalisation of every model."""

from __future__ import annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel mean (R, G, B)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel standard deviation (R, G, B)."""
