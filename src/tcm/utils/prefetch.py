"""Iterating a source in a background thread, a bounded number of items ahead:
:class:`Prefetcher`. Decoding a video (PyAV) and running a model (PyTorch, ONNX Runtime,
OpenVINO) release the GIL, so the two overlap on different cores."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

Item = TypeVar("Item")
_END = object()
# How often a blocked thread looks whether it was asked to stop (seconds).
_POLL = 0.1


class Prefetcher(Generic[Item]):
    """``source``'s items, produced in a thread at most ``depth`` ahead of the consumer.

    An exception of ``source`` is raised to the consumer when it reaches that point. Call
    :meth:`close` (or use ``with``) when stopping early: the thread stops after its current
    item (a source blocked in a read that never returns, a dead live stream, is left behind
    as a daemon thread after ``join_timeout`` seconds).

    Example:
        >>> with Prefetcher(range(3), depth=2) as items:
        ...     list(items)
        [0, 1, 2]
    """

    def __init__(self, source: Iterable[Item], depth: int = 32, join_timeout: float = 5.0):
        if depth < 1:
            raise ValueError(f"prefetch depth must be positive, got {depth}")
        self._queue: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._join_timeout = join_timeout
        self._thread = threading.Thread(
            target=self._fill, args=(iter(source),), name="tcm-prefetch", daemon=True
        )
        self._thread.start()

    def _put(self, entry: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self, source: Iterator[Item]) -> None:
        try:
            for item in source:
                if not self._put((item, None)):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            self._put((_END, error))
            return
        self._put((_END, None))

    def __iter__(self) -> Iterator[Item]:
        while True:
            item, error = self._queue.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(self._join_timeout)

    def __enter__(self) -> Prefetcher[Item]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
