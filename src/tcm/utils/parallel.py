"""Mapping a function over items in worker processes, with an optional progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
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
    """
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), unit=unit, desc=desc)
    results: list[Result] = []
    try:
        mapped: Iterable[Result]
        if workers <= 1 or len(items) <= 1:
            mapped = map(fn, items)
            for result in mapped:
                results.append(result)
                if bar is not None:
                    bar.update()
        else:
            with ProcessPoolExecutor(min(workers, len(items))) as pool:
                try:
                    for result in pool.map(fn, items, chunksize=chunksize):
                        results.append(result)
                        if bar is not None:
                            bar.update()
                except BaseException:
                    # Stop at the first error (or Ctrl-C): the items not started are dropped,
                    # those running finish.
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        if bar is not None:
            bar.close()
    return results
