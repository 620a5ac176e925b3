"""map_in_processes: results in input order, errors that name their cause, the in-process path."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import pytest

from tcm.utils.parallel import _chunks_in_order, map_in_processes


def square_after(item: int, delay: float = 0.0) -> int:
    """``item ** 2``; the first items wait longest, so they finish last."""
    time.sleep(delay * (8 - item))
    return item * item


def process_id(_item: int) -> int:
    return os.getpid()


def fail_on_three(item: int) -> int:
    if item == 3:
        raise ValueError(f"item {item} is bad")
    return item


@pytest.mark.parametrize("workers", [1, 2])
def test_results_come_in_input_order(workers):
    items = list(range(8))
    results = map_in_processes(
        partial(square_after, delay=0.01), items, workers=workers, chunksize=1
    )
    assert results == [i * i for i in items]


def test_one_worker_runs_in_this_process():
    assert map_in_processes(process_id, range(5), workers=1) == [os.getpid()] * 5
    # Nothing is pickled in-process: a lambda is fine.
    assert map_in_processes(lambda x: x + 1, [1, 2], workers=1) == [2, 3]
    # A single item never starts a pool, however many workers are asked.
    assert map_in_processes(process_id, [0], workers=4) == [os.getpid()]
    assert map_in_processes(process_id, [], workers=4) == []


def test_several_workers_run_in_other_processes():
    pids = map_in_processes(process_id, range(6), workers=2, chunksize=1)
    assert len(pids) == 6 and os.getpid() not in pids


@pytest.mark.parametrize("workers", [1, 2])
def test_an_error_propagates_with_its_type_and_message(workers):
    with pytest.raises(ValueError, match="item 3 is bad") as caught:
        map_in_processes(fail_on_three, range(6), workers=workers, chunksize=1)
    if workers > 1:  # the worker's traceback is attached as the cause
        assert "fail_on_three" in str(caught.value.__cause__)


def test_progress_bar_counts_the_items(capsys):
    results = map_in_processes(square_after, range(4), workers=1, progress=True, desc="squares")
    assert results == [0, 1, 4, 9]
    err = capsys.readouterr().err
    assert "squares" in err and "4/4" in err


def test_progress_bar_is_closed_on_error(capsys):
    with pytest.raises(ValueError):
        map_in_processes(fail_on_three, range(6), workers=1, progress=True, desc="failing")
    err = capsys.readouterr().err
    assert "failing" in err and "3/6" in err


class WatchedItems(Sequence):
    """Items that count the chunks taken from them (the chunks submitted)."""

    def __init__(self, count: int) -> None:
        self.count, self.taken = count, 0

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):
        if isinstance(index, slice):
            self.taken += 1
            return list(range(self.count))[index]
        return index


def test_chunks_are_submitted_as_results_come_back():
    items = WatchedItems(400)
    with ProcessPoolExecutor(2) as pool:
        chunks = _chunks_in_order(pool, square_after, items, chunksize=4, ahead=4)
        first = next(chunks)
        assert first == [0, 1, 4, 9] and items.taken == 4  # 4 of the 100 chunks submitted
        rest = [value for chunk in chunks for value in chunk]
    assert first + rest == [i * i for i in range(400)] and items.taken == 100
