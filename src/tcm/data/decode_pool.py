"""The process-wide pool of threads that decode one clip's frames in parallel (both readers)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

# The threads that run a reader's extra decoders: (process id, threads, pool). Created on first
# use; a forked child (a DataLoader worker) inherits the pool without its threads, so it makes
# its own. A reader wanting more threads replaces it; the old pool's threads end once the
# readers using it let go (never shut down here: another thread may be submitting to it).
_pool: tuple[int, int, ThreadPoolExecutor] | None = None


def thread_pool(threads: int) -> ThreadPoolExecutor:
    """This process's pool of decoding threads, with at least ``threads`` threads."""
    global _pool
    pool = _pool
    if pool is None or pool[0] != os.getpid() or pool[1] < threads:
        executor = ThreadPoolExecutor(threads, thread_name_prefix="tcm-decode")
        pool = _pool = (os.getpid(), threads, executor)
    return pool[2]


def map_list(function, items) -> list:
    """``[function(item) for item in items]``, for handing to a thread pool."""
    return [function(item) for item in items]
