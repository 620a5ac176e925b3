"""Mapping a function over items in worker processes, with an optional progress bar."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_in_processes(
    fn: Callable[[Item], Result],
    items: Sequence[Item],
    *,
    workers: int,
    progress: bool = False,
    desc: str = "",
    unit: str = "it",
    chunksize: int = 4,
) -> list[Result]:
    """``[fn(item) for item in items]``, in order, over ``workers`` processes (1: in-process).

    An exception of ``fn`` stops the whole map and is raised; items not yet started are not
    run. ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one).
    Items go to the processes ``chunksize`` at a time, a few chunks per process ahead: memory
    stays bounded however many items there are, and the first results come at once.
    """
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), unit=unit, desc=desc)
    results: list[Result] = []
    try:
        if workers <= 1 or len(items) <= 1:
            for result in map(fn, items):
                results.append(result)
                if bar is not None:
                    bar.update()
        else:
            workers = min(workers, len(items))
            with ProcessPoolExecutor(workers) as pool:
                try:
                    for chunk in _chunks_in_order(pool, fn, items, chunksize, 2 * workers):
                        results.extend(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                except BaseException:
                    # Stop at the first error (or Ctrl-C): the items not started are dropped,
                    # those running finish.
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        if bar is not None:
            bar.close()
    return results


def _apply(fn: Callable[[Item], Result], chunk: Sequence[Item]) -> list[Result]:
    return [fn(item) for item in chunk]


def _chunks_in_order(
    pool: Executor,
    fn: Callable[[Item], Result],
    items: Sequence[Item],
    chunksize: int,
    ahead: int,
) -> Iterator[list[Result]]:
    """The results of ``items`` chunk by chunk, in order, with at most ``ahead`` chunks
    submitted and not yet returned (a new one is submitted as each returns)."""
    pending: deque = deque()
    for start in range(0, len(items), chunksize):
        pending.append(pool.submit(_apply, fn, items[start : start + chunksize]))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
