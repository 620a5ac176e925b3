"""What the loader yields: items and batches of clips that carry their skipped samples.

Skips travel with the data, so they are seen with any number of workers: each item of a
:class:`~tcm.data.datasets.VideoDataset` is a :class:`ClipSample` (a ``(clip, label)`` tuple with
a ``skipped`` attribute), :func:`collate_clips` makes a :class:`ClipBatch` (``(clips, labels)``
with ``skipped`` and ``excluded``), and a :class:`SkipReport` sums them over an epoch.
:func:`loader_errors` turns a DataLoader worker killed by the system into a one-line error.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from tcm.errors import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkippedSample:
    """A sample replaced under the ``skip`` policy: its index, path and why."""

    index: int
    path: str
    reason: str
    message: str


class ClipSample(tuple):
    """``(clip, label)``, with ``skipped``: the samples replaced to produce it (usually none).

    In a test dataset a bad sample gives ``clip=None`` (left out, never replaced) and itself
    in ``skipped``."""

    skipped: tuple[SkippedSample, ...]

    def __new__(cls, clip: torch.Tensor | None, label: int, skipped: Sequence[SkippedSample] = ()):
        self = super().__new__(cls, (clip, label))
        self.skipped = tuple(skipped)
        return self

    def __reduce__(self):
        return (ClipSample, (self[0], self[1], self.skipped))


class ClipBatch(tuple):
    """``(clips, labels)``: float32 ``(N, V * T, 3, H, W)`` and int64 ``(N,)``, with
    ``skipped``, the :class:`SkippedSample` of every item of the batch, and ``excluded``, the
    positions in the loader's batch of the items left out (bad samples of a test dataset;
    ``N`` counts the others; all left out: ``clips`` is empty)."""

    skipped: tuple[SkippedSample, ...]
    excluded: tuple[int, ...]

    def __new__(
        cls,
        clips: torch.Tensor,
        labels: torch.Tensor,
        skipped: Sequence[SkippedSample] = (),
        excluded: Sequence[int] = (),
    ):
        self = super().__new__(cls, (clips, labels))
        self.skipped = tuple(skipped)
        self.excluded = tuple(excluded)
        return self

    def __reduce__(self):
        return (ClipBatch, (self[0], self[1], self.skipped, self.excluded))

    def pin_memory(self) -> ClipBatch:
        """Called by ``DataLoader(pin_memory=True)``; keeps ``skipped`` and ``excluded``."""
        return ClipBatch(self[0].pin_memory(), self[1].pin_memory(), self.skipped, self.excluded)


def collate_clips(batch: Sequence[tuple[torch.Tensor | None, int]]) -> ClipBatch:
    """DataLoader ``collate_fn``: stack clips ``(N, V*T, 3, H, W)``, labels ``(N,)`` int64,
    and gather the skipped samples of the items. Items without a clip (bad samples of a test
    dataset) are left out; their positions go to ``ClipBatch.excluded``."""
    excluded = [position for position, item in enumerate(batch) if item[0] is None]
    kept = [item for item in batch if item[0] is not None]
    clips = torch.stack([item[0] for item in kept]) if kept else torch.empty(0)
    labels = torch.tensor([int(item[1]) for item in kept], dtype=torch.int64)
    skipped = [entry for item in batch for entry in getattr(item, "skipped", ())]
    return ClipBatch(clips, labels, skipped, excluded)


@contextlib.contextmanager
def loader_errors(what: str = "data") -> Iterator[None]:
    """Within the block, a DataLoader worker killed by the system (out of memory, ``kill``)
    becomes a :class:`~tcm.errors.DataError` that says so in one line; other errors pass.

    Example:
        >>> with loader_errors("training data"):     # doctest: +SKIP
        ...     for clips, labels in loader:
        ...         ...
    """
    try:
        yield
    except RuntimeError as error:
        text = str(error)
        if not text.startswith("DataLoader worker"):
            raise
        raise DataError(
            f"{what}: {text.splitlines()[0].rstrip('. ')}; the system may have run out of "
            "memory: lower data.num_workers or data.batch_size"
        ) from error


class SkipReport:
    """Counts of skipped samples over an epoch.

    Example:
        >>> report = SkipReport()
        >>> for batch in loader:            # doctest: +SKIP
        ...     clips, labels = batch
        ...     report.update(batch)
        >>> report.log_summary(epoch)       # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.entries: list[SkippedSample] = []

    def update(self, batch_or_entries) -> None:
        entries = getattr(batch_or_entries, "skipped", batch_or_entries)
        self.entries.extend(entries)

    @property
    def count(self) -> int:
        return len(self.entries)

    def by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self.entries:
            counts[entry.reason] = counts.get(entry.reason, 0) + 1
        return counts

    def summary(self, limit: int = 5) -> str:
        if not self.entries:
            return "no sample skipped"
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.by_reason().items()))
        paths = sorted({entry.path for entry in self.entries})
        shown = ", ".join(paths[:limit]) + (
            f", ... ({len(paths) - limit} more)" if len(paths) > limit else ""
        )
        return f"{self.count} samples skipped ({reasons}): {shown}"

    def log_summary(self, epoch: int | None = None) -> None:
        prefix = f"epoch {epoch}: " if epoch is not None else ""
        (logger.warning if self.entries else logger.info)(prefix + self.summary())

    def reset(self) -> None:
        self.entries.clear()
