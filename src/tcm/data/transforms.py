"""Clip augmentation on uint8 tensors, with one set of random parameters per clip.

A clip is a tensor ``(*, 3, H, W)``: usually ``(T, 3, H, W)``, uint8 (0..255), RGB; every
function applies to all leading dimensions at once (no loop over frames), so all frames of a
clip get the same resize, crop and flip. Tensors made from decoded ``(T, H, W, 3)`` arrays by
``permute(0, 3, 1, 2)`` are channels-last in memory, the layout in which PyTorch resizes uint8
images fastest.

Each transform is a plain function (``resize``, ``crop``, ``center_crop``, ``three_crop``,
``hflip``, ``normalize``; ``multi_scale_crop_params`` and ``random_crop_params`` draw crop
boxes) plus a thin callable class for pipelines. The classes share one signature,
``transform(clip, label, rng) -> (clip, label)``, with ``rng`` a :class:`numpy.random.Generator`
(unused by deterministic transforms) and ``label`` changed only by a flip of a mirror class.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from tcm.errors import TcmError

Size = int | tuple[int, int]

# --------------------------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------------------------


class CropOutsideFrameError(TcmError, ValueError):
    """A crop larger than the frames (small frames and no resize to enlarge them)."""


def _pair(size: Size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(h, w)`` with the short side scaled to ``short_side`` and the aspect ratio kept."""
    if height <= width:
        return short_side, max(1, round(width * short_side / height))
    return max(1, round(height * short_side / width)), short_side


def resize(clip: torch.Tensor, size: Size, *, short_side: bool = False) -> torch.Tensor:
    """Bilinear resize (antialiased when shrinking, like PIL).

    Args:
        clip: ``(*, 3, H, W)`` uint8 or float.
        size: ``(h, w)``, or with ``short_side=True`` an int for the short side.

    Returns:
        ``(*, 3, h, w)``, same dtype.
    """
    height, width = clip.shape[-2:]
    if short_side:
        if not isinstance(size, int):
            raise ValueError(f"short-side resize takes an int, got {size!r}")
        out_h, out_w = short_side_size(height, width, size)
    else:
        out_h, out_w = _pair(size)
    if (out_h, out_w) == (height, width):
        return clip
    lead = clip.shape[:-3]
    flat = clip.reshape(-1, *clip.shape[-3:])  # (N, 3, H, W)
    if flat.dtype == torch.uint8 and flat.is_contiguous():
        flat = flat.contiguous(memory_format=torch.channels_last)
    out = F.interpolate(
        flat, size=(out_h, out_w), mode="bilinear", align_corners=False, antialias=True
    )
    return out.reshape(*lead, *out.shape[-3:])


def crop(clip: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """``clip[..., top:top + height, left:left + width]`` (a view), checked to fit.

    Args:
        clip: ``(*, 3, H, W)``.

    Returns:
        ``(*, 3, height, width)``.
    """
    full_h, full_w = clip.shape[-2:]
    if top < 0 or left < 0 or top + height > full_h or left + width > full_w:
        raise CropOutsideFrameError(
            f"crop {height}x{width} at ({top}, {left}) does not fit a {full_h}x{full_w} clip"
        )
    return clip[..., top : top + height, left : left + width]


def center_crop(clip: torch.Tensor, size: Size) -> torch.Tensor:
    """Central ``size`` crop: ``(*, 3, H, W) -> (*, 3, h, w)``."""
    height, width = _pair(size)
    full_h, full_w = clip.shape[-2:]
    return crop(clip, (full_h - height) // 2, (full_w - width) // 2, height, width)


def three_crop(clip: torch.Tensor, size: Size) -> torch.Tensor:
    """Three crops along the long side: start, centre, end (the short side is centred).

    Args:
        clip: ``(*, 3, H, W)``.

    Returns:
        ``(3, *, 3, h, w)``.
    """
    height, width = _pair(size)
    full_h, full_w = clip.shape[-2:]
    if full_w >= full_h:
        top = (full_h - height) // 2
        boxes = [(top, left) for left in (0, (full_w - width) // 2, full_w - width)]
    else:
        left = (full_w - width) // 2
        boxes = [(top, left) for top in (0, (full_h - height) // 2, full_h - height)]
    return torch.stack([crop(clip, top, left, height, width) for top, left in boxes])


def hflip(clip: torch.Tensor) -> torch.Tensor:
    """Mirror left-right: ``(*, 3, H, W)``."""
    return clip.flip(-1)


def normalize(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(*, 3, H, W)`` in 0..255 -> float32 ``(x / 255 - mean) / std``, contiguous.

    ``mean`` and ``std`` are per channel, for pixels in 0..1 (the model's configuration).
    A float clip (already in 0..1) is only standardised, and never changed in place.
    """
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(3, 1, 1)
    out = clip.to(torch.float32, memory_format=torch.contiguous_format)
    if out is clip:
        out = out.clone()
    if clip.dtype == torch.uint8:
        out = out.mul_(1.0 / 255.0)
    # Three in-place steps, rounded as they always were: runs reproduce to the last bit.
    return out.sub_(mean_t).div_(std_t)


def multi_scale_crop_params(
    height: int,
    width: int,
    *,
    output_size: Size = 224,
    scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66),
    max_distort: int = 1,
    fix_crop: bool = True,
    more_fix_crop: bool = False,
    rng: np.random.Generator,
) -> tuple[int, int, int, int]:
    """Crop box of the TSN multi-scale crop: ``(top, left, crop_h, crop_w)``.

    Candidate sides are ``int(min(H, W) * s)`` for ``s`` in ``scales``, each snapped to the
    output side when within 3 pixels of it. Height and width are drawn as a pair of candidates
    whose indices differ by at most ``max_distort``. The offset is one of a fixed grid of 5
    positions (corners and centre; 13 with ``more_fix_crop``), or uniform without ``fix_crop``.
    The crop is then resized to ``output_size`` by the caller.
    """
    out_h, out_w = _pair(output_size)
    base = min(height, width)
    sides = [int(base * scale) for scale in scales]
    crop_hs = [out_h if abs(side - out_h) < 3 else side for side in sides]
    crop_ws = [out_w if abs(side - out_w) < 3 else side for side in sides]
    pairs = [
        (crop_h, crop_w)
        for i, crop_h in enumerate(crop_hs)
        for j, crop_w in enumerate(crop_ws)
        if abs(i - j) <= max_distort
    ]
    crop_h, crop_w = pairs[int(rng.integers(len(pairs)))]
    if not fix_crop:
        top = int(rng.integers(height - crop_h + 1))
        left = int(rng.integers(width - crop_w + 1))
        return top, left, crop_h, crop_w
    step_h, step_w = (height - crop_h) // 4, (width - crop_w) // 4
    grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]  # (row, column) in steps
    if more_fix_crop:
        grid += [(2, 0), (2, 4), (4, 2), (0, 2), (1, 1), (1, 3), (3, 1), (3, 3)]
    row, column = grid[int(rng.integers(len(grid)))]
    return row * step_h, column * step_w, crop_h, crop_w


def random_crop_params(
    height: int, width: int, size: Size, *, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """Uniform crop box ``(top, left, h, w)`` of ``size`` inside ``height x width``."""
    crop_h, crop_w = _pair(size)
    if crop_h > height or crop_w > width:
        raise CropOutsideFrameError(f"crop {crop_h}x{crop_w} larger than the {height}x{width} clip")
    top = int(rng.integers(height - crop_h + 1))
    left = int(rng.integers(width - crop_w + 1))
    return top, left, crop_h, crop_w


_SIDE = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def _swap_sides(name: str) -> str:
    def swap(match: re.Match) -> str:
        word = match.group(0)
        other = "right" if word.lower() == "left" else "left"
        if word.isupper():
            return other.upper()
        return other.capitalize() if word[0].isupper() else other

    return _SIDE.sub(swap, name)


def mirror_classes(class_names: Sequence[str]) -> list[int]:
    """What a horizontal flip does to each class, derived from the names.

    Swapping the words "left" and "right" in a name (whole words, all at once, so "from left
    to right" becomes "from right to left") gives its mirror. Returns, per class index:
    the mirror class's index when that name exists, ``-1`` when the name has a side but no
    mirror class (such clips are never flipped), and the class itself otherwise (flips freely).
    Independent of the class order.

    Example:
        >>> mirror_classes(["Pushing left", "jumping", "Pushing right", "left out"])
        [2, 1, 0, -1]
    """
    index = {name.strip().lower(): i for i, name in enumerate(class_names)}
    result = []
    for i, name in enumerate(class_names):
        if not _SIDE.search(name):
            result.append(i)
            continue
        result.append(index.get(_swap_sides(name.strip()).lower(), -1))
    return result


# --------------------------------------------------------------------------------------------
# Callable wrappers: transform(clip, label, rng) -> (clip, label)
# --------------------------------------------------------------------------------------------


class Resize:
    """Resize to ``(h, w)``, or the short side to an int: ``(*, 3, H, W) -> (*, 3, h, w)``."""

    def __init__(self, size: Size) -> None:
        self.size = size

    def __call__(self, clip, label, rng=None):
        return resize(clip, self.size, short_side=isinstance(self.size, int)), label

    def __repr__(self) -> str:
        return f"Resize({self.size})"


class RandomShortSideResize:
    """Short side drawn uniformly in ``[low, high]`` per clip: ``(*, 3, H, W) -> (*, 3, h, w)``."""

    def __init__(self, low: int, high: int) -> None:
        if low > high:
            raise ValueError(f"empty short-side range [{low}, {high}]")
        self.low, self.high = low, high

    def __call__(self, clip, label, rng):
        side = int(rng.integers(self.low, self.high + 1))
        return resize(clip, side, short_side=True), label

    def __repr__(self) -> str:
        return f"RandomShortSideResize({self.low}, {self.high})"


class MultiScaleCrop:
    """TSN multi-scale crop, then resize: ``(*, 3, H, W) -> (*, 3, size, size)``.

    See :func:`multi_scale_crop_params`.
    """

    def __init__(
        self,
        size: Size = 224,
        scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66),
        max_distort: int = 1,
        fix_crop: bool = True,
        more_fix_crop: bool = False,
    ) -> None:
        self.size = _pair(size)
        self.scales = tuple(scales)
        self.max_distort = max_distort
        self.fix_crop = fix_crop
        self.more_fix_crop = more_fix_crop

    def __call__(self, clip, label, rng):
        height, width = clip.shape[-2:]
        box = multi_scale_crop_params(
            height,
            width,
            output_size=self.size,
            scales=self.scales,
            max_distort=self.max_distort,
            fix_crop=self.fix_crop,
            more_fix_crop=self.more_fix_crop,
            rng=rng,
        )
        return resize(crop(clip, *box), self.size), label

    def __repr__(self) -> str:
        return f"MultiScaleCrop({self.size}, scales={self.scales}, max_distort={self.max_distort})"


class RandomCrop:
    """Uniform random crop: ``(*, 3, H, W) -> (*, 3, h, w)``."""

    def __init__(self, size: Size) -> None:
        self.size = _pair(size)

    def __call__(self, clip, label, rng):
        return crop(clip, *random_crop_params(*clip.shape[-2:], self.size, rng=rng)), label

    def __repr__(self) -> str:
        return f"RandomCrop({self.size})"


class CenterCrop:
    """Central crop: ``(*, 3, H, W) -> (*, 3, h, w)``."""

    def __init__(self, size: Size) -> None:
        self.size = _pair(size)

    def __call__(self, clip, label, rng=None):
        return center_crop(clip, self.size), label

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


class ThreeCrop:
    """Three crops along the long side: ``(*, 3, H, W) -> (3, *, 3, h, w)``."""

    def __init__(self, size: Size) -> None:
        self.size = _pair(size)

    def __call__(self, clip, label, rng=None):
        return three_crop(clip, self.size), label

    def __repr__(self) -> str:
        return f"ThreeCrop({self.size})"


class RandomHorizontalFlip:
    """Flip the whole clip with probability ``p``, mapping the label to its mirror class.

    Args:
        p: flip probability.
        mirror: from :func:`mirror_classes`; ``None`` lets every class flip unchanged.
    """

    def __init__(self, p: float = 0.5, mirror: Sequence[int] | None = None) -> None:
        self.p = p
        self.mirror = list(mirror) if mirror is not None else None

    def __call__(self, clip, label, rng):
        draw = rng.random()  # drawn for every clip, so later draws don't depend on the label
        if draw >= self.p:
            return clip, label
        if self.mirror is None:
            return hflip(clip), label
        target = self.mirror[label]
        if target < 0:
            return clip, label
        return hflip(clip), target

    def __repr__(self) -> str:
        pairs = (
            None
            if self.mirror is None
            else sum(m not in (i, -1) for i, m in enumerate(self.mirror))
        )
        return f"RandomHorizontalFlip(p={self.p}, mirrored_classes={pairs})"


class Compose:
    """Apply transforms in order; each gets and returns ``(clip, label)``."""

    def __init__(self, transforms: Sequence) -> None:
        self.transforms = list(transforms)

    def __call__(self, clip, label, rng=None):
        for transform in self.transforms:
            clip, label = transform(clip, label, rng)
        return clip, label

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


def build_train_transform(
    *,
    input_size: int = 224,
    resize: Size | None = (240, 320),
    short_side_range: tuple[int, int] | None = None,
    crop: str = "multiscale",
    scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66),
    max_distort: int = 1,
    more_fix_crop: bool = False,
    flip: bool = True,
    mirror: Sequence[int] | None = None,
) -> Compose:
    """Training augmentation: resize, crop (``"multiscale"`` or ``"random"``), flip.

    ``short_side_range=(256, 320)`` draws the short side per clip (Kinetics convention) and
    takes precedence over ``resize``. Output ``(T, 3, input_size, input_size)``.
    """
    steps: list = []
    if short_side_range is not None:
        steps.append(RandomShortSideResize(*short_side_range))
    elif resize is not None:
        steps.append(Resize(resize))
    if crop == "multiscale":
        steps.append(MultiScaleCrop(input_size, scales, max_distort, more_fix_crop=more_fix_crop))
    elif crop == "random":
        steps.append(RandomCrop(input_size))
    else:
        raise ValueError(f"unknown training crop {crop!r}; expected 'multiscale' or 'random'")
    if flip:
        steps.append(RandomHorizontalFlip(0.5, mirror))
    return Compose(steps)


def build_test_transform(
    *, input_size: int = 224, resize: Size | None = (240, 320), num_crops: int = 1
) -> Compose:
    """Test transform: resize, then a centre crop (``num_crops=1``, output ``(T, 3, s, s)``)
    or three crops (``num_crops=3``, output ``(3, T, 3, s, s)``)."""
    steps: list = [Resize(resize)] if resize is not None else []
    if num_crops == 1:
        steps.append(CenterCrop(input_size))
    elif num_crops == 3:
        steps.append(ThreeCrop(input_size))
    else:
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    return Compose(steps)
