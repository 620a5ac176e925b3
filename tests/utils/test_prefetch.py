""":class:`tcm.utils.prefetch.Prefetcher`: order, errors raised where they happen, early stop."""

from __future__ import annotations

import threading
import time

import pytest

from tcm.utils.prefetch import Prefetcher


def test_items_in_order_and_bounded_ahead():
    produced = []

    def source():
        for i in range(50):
            produced.append(i)
            yield i

    with Prefetcher(source(), depth=4) as items:
        iterator = iter(items)
        assert next(iterator) == 0
        time.sleep(0.3)
        assert len(produced) <= 1 + 4 + 1  # the one taken, the queue, the one waiting to go in
        assert [0, *iterator] == list(range(50))


def test_an_error_of_the_source_reaches_the_consumer_in_place():
    def source():
        yield 1
        yield 2
        raise OSError("disk gone")

    seen = []
    with pytest.raises(OSError, match="disk gone"), Prefetcher(source(), depth=8) as items:
        for item in items:
            seen.append(item)
    assert seen == [1, 2]


def test_close_stops_the_thread_early():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    items = Prefetcher(endless(), depth=2)
    assert next(iter(items)) == 0
    items.close()
    assert threading.active_count() == before
