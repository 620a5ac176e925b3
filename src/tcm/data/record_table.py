"""A list file's samples in packed form, read once per process.

A Kinetics-400 training list holds 240k samples; as a Python list of
:class:`~tcm.data.annotations.VideoRecord` every sample is a few objects whose reference counts
change whenever a DataLoader worker reads them, so each forked worker copies the pages it
touches and its memory grows through the epoch (tens of MiB per worker for Kinetics-400).
:class:`RecordTable` keeps the paths in one byte buffer (UTF-8, ``\\n``-separated) with their
end offsets, and the labels, frame counts and line numbers in numpy arrays: a handful of
objects whatever the length, whose pages forked workers share without writing to them. Reading
sample ``i`` builds its :class:`VideoRecord` on demand.

:func:`read_table` keeps the tables of the last few files it read (keyed by the file's path,
size and modification time), so that the checks before training and the dataset share one
read of each list.
"""

from __future__ import annotations

import functools
import operator
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from tcm.data.annotations import VideoRecord, list_entries

_NO_FRAME_COUNT = -1  # num_frames of a record whose list line does not state it


class RecordTable(Sequence[VideoRecord]):
    """Samples of a list file, packed; a read-only sequence of :class:`VideoRecord`.

    Attributes:
        labels: ``(N,)`` int64 class indices.
        num_frames: ``(N,)`` int64 frame counts, -1 where the list does not state one.
        lines: ``(N,)`` int64 1-based line numbers in the list file (0 when unknown).

    Example:
        >>> table = RecordTable.from_records([VideoRecord("a b/c.mp4", 3)])
        >>> table[0], table.path(0), table.labels
        (VideoRecord(path='a b/c.mp4', label=3, num_frames=None), 'a b/c.mp4', array([3]))
    """

    def __init__(
        self,
        paths: bytes,
        ends: np.ndarray,
        labels: np.ndarray,
        num_frames: np.ndarray,
        lines: np.ndarray,
    ) -> None:
        self._paths = paths  # every path in UTF-8, each followed by b"\n"
        self._ends = _frozen(ends)  # (N,) offset just past path i (its b"\n")
        self.labels = _frozen(labels)
        self.num_frames = _frozen(num_frames)
        self.lines = _frozen(lines)

    @classmethod
    def from_entries(cls, entries: Iterable[tuple[int, str, int, int | None]]) -> RecordTable:
        """From ``(line, path, label, num_frames or None)`` tuples
        (:func:`~tcm.data.annotations.list_entries`)."""
        lines, paths, labels, frames = [], [], [], []
        for line, path, label, num_frames in entries:
            lines.append(line)
            paths.append(path)
            labels.append(label)
            frames.append(_NO_FRAME_COUNT if num_frames is None else num_frames)
        blob = "".join(f"{p}\n" for p in paths).encode("utf-8")
        # A path holds no newline (it came from one line), so the newlines mark the ends.
        ends = np.flatnonzero(np.frombuffer(blob, dtype=np.uint8) == ord("\n")) + 1
        return cls(
            blob,
            ends.astype(np.int64),
            np.asarray(labels, dtype=np.int64),
            np.asarray(frames, dtype=np.int64),
            np.asarray(lines, dtype=np.int64),
        )

    @classmethod
    def from_records(cls, records: Iterable[VideoRecord]) -> RecordTable:
        """From records (a list, or another table)."""
        if isinstance(records, RecordTable):
            return records
        records = records if isinstance(records, Sequence) else list(records)
        for record in records:
            if "\n" in record.path:
                raise ValueError(f"a sample path holds a line break: {record.path!r}")
        return cls.from_entries((r.line, r.path, r.label, r.num_frames) for r in records)

    def __len__(self) -> int:
        return len(self._ends)

    def _index(self, index: int) -> int:
        i = operator.index(index)
        n = len(self._ends)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample {index} out of range for {n} samples")
        return i

    def path(self, index: int) -> str:
        """The path of sample ``index``, relative to the data root."""
        i = self._index(index)
        start = int(self._ends[i - 1]) if i else 0
        return self._paths[start : int(self._ends[i]) - 1].decode("utf-8")

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = self._index(index)
        frames = int(self.num_frames[i])
        return VideoRecord(
            self.path(i),
            int(self.labels[i]),
            None if frames == _NO_FRAME_COUNT else frames,
            int(self.lines[i]),
        )

    def __iter__(self) -> Iterator[VideoRecord]:
        return (self[i] for i in range(len(self)))

    @property
    def nbytes(self) -> int:
        """Bytes held by the table's buffers."""
        arrays = (self._ends, self.labels, self.num_frames, self.lines)
        return len(self._paths) + sum(a.nbytes for a in arrays)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} samples, {self.nbytes / 2**20:.1f} MiB)"


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False  # tables are shared: between readers, and by read_table's cache
    return array


def read_table(path: str | os.PathLike) -> RecordTable:
    """The samples of the list file ``path``, packed (same rules as
    :func:`~tcm.data.annotations.read_list`); a file read before and unchanged since is not
    read again.

    Raises:
        FileNotFoundError, ValueError: naming the file (and the line at fault).
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return RecordTable.from_entries(list_entries(path))  # the reader names the problem
    return _read_table(path, path.absolute(), stat.st_size, stat.st_mtime_ns, stat.st_ino)


@functools.lru_cache(maxsize=4)
def _read_table(path: Path, *file_identity) -> RecordTable:
    # ``file_identity`` (absolute path, size, modification time, inode) is the cache key only:
    # a file changed since it was read is read again.
    return RecordTable.from_entries(list_entries(path))
