"""Sliding windows assembled from a decoded stream, in constant memory: :class:`WindowAssembler`.

Memory does not grow with the video: :class:`~tcm.data.video_stream.VideoStream` decodes packet
by packet and hands each frame on; :class:`WindowAssembler` prepares (converts, resizes and
crops, with the data package's test transform) only the frames some window samples, keeps them
until the last window that needs them is complete, and hands out each window's clip as soon as
its last frame has been decoded. At most ``window`` frames (at the model's input size) are held
at any time, whatever the length of the video. Every window that overlaps a
:class:`~tcm.data.video_stream.Gap` is skipped (a :class:`SkippedWindow`) and the others go on.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import av
import torch

from tcm.data.preprocessing import Preprocessing
from tcm.data.pyav import frame_to_rgb
from tcm.data.transforms import build_test_transform
from tcm.data.video_stream import DecodedFrame, Gap
from tcm.deploy.window_plan import WindowPlan


class FramePreparer:
    """A decoded frame as the model's test pipeline prepares it, without normalisation.

    The data package's test transform (:func:`~tcm.data.transforms.build_test_transform`:
    ``prep.resize``, then the centre crop or the three crops of ``prep.input_size``) applied to
    one frame: the same operations, on the same frames, as :func:`~tcm.deploy.inputs.read_clip`.

    Returns (when called on a frame): uint8 ``(num_crops, 3, S, S)``, contiguous (it holds no
    reference to the full-size frame).
    """

    def __init__(self, prep: Preprocessing) -> None:
        self.prep = prep
        self.transform = build_test_transform(
            input_size=prep.input_size, resize=prep.resize, num_crops=prep.num_crops
        )

    def __call__(self, frame: av.VideoFrame) -> torch.Tensor:
        image = torch.from_numpy(frame_to_rgb(frame)).permute(2, 0, 1)[None]  # (1, 3, H, W)
        out, _ = self.transform(image, None)  # (1, 3, S, S) or three crops (3, 1, 3, S, S)
        return out.reshape(-1, *out.shape[-3:]).contiguous()  # (num_crops, 3, S, S)


@dataclass
class WindowClip:
    """A complete window: its number, frame range ``[start, stop)`` and uint8 clip
    ``(V*T, 3, S, S)`` (views in the order of :func:`~tcm.deploy.inputs.read_clip`)."""

    k: int
    start: int
    stop: int
    clip: torch.Tensor


@dataclass
class SkippedWindow:
    """A window that overlaps frames that could not be decoded."""

    k: int
    start: int
    stop: int
    reason: str


class WindowAssembler:
    """Keeps the prepared frames that pending windows sample; hands out complete windows.

    Feed it the items of a :class:`VideoStream` in order with :meth:`push`; each call returns
    the windows completed by that frame or gap (usually none or one).

    Args:
        plan: the windows.
        prepare: decoded frame -> ``(num_crops, 3, S, S)`` uint8 (a :class:`FramePreparer`).
    """

    def __init__(self, plan: WindowPlan, prepare: FramePreparer) -> None:
        self.plan = plan
        self.prepare = prepare
        self.next_window = 0
        self._frames: dict[int, torch.Tensor] = {}
        self._gaps: deque[Gap] = deque()
        #: the largest number of prepared frames held at once (for tests and benchmarks)
        self.peak_frames = 0

    @property
    def held_frames(self) -> int:
        """Prepared frames held now."""
        return len(self._frames)

    def push(self, item: DecodedFrame | Gap) -> list[WindowClip | SkippedWindow]:
        if isinstance(item, Gap):
            self._gaps.append(item)
            last = item.stop - 1
        else:
            last = item.index
            if self.plan.needed(item.index):
                self._frames[item.index] = self.prepare(item.frame)
                self.peak_frames = max(self.peak_frames, len(self._frames))
        done = []
        while self.plan.end(self.next_window) - 1 <= last:
            done.append(self._complete(self.next_window))
            self.next_window += 1
            self._forget_before(self.plan.start(self.next_window))
        return done

    def _complete(self, k: int) -> WindowClip | SkippedWindow:
        start, stop = self.plan.start(k), self.plan.end(k)
        for gap in self._gaps:
            if gap.start < stop and gap.stop > start:
                return SkippedWindow(k, start, stop, gap.reason)
        views = []
        for clip_indices in self.plan.indices(k):  # (T,) per test clip
            frames = torch.stack([self._frames[int(i)] for i in clip_indices], dim=1)
            views.append(frames)  # (num_crops, T, 3, S, S)
        clip = torch.cat(views).flatten(0, 1)  # (V*T, 3, S, S)
        return WindowClip(k, start, stop, clip)

    def _forget_before(self, first: int) -> None:
        for index in [i for i in self._frames if i < first]:
            del self._frames[index]
        while self._gaps and self._gaps[0].stop <= first:
            self._gaps.popleft()
