"""glibc's allocator told to keep freed memory, for the processes the ``tcm`` command runs.

By default glibc returns large freed blocks to the system at once (blocks from 128 KiB up are
``mmap``-ed and unmapped; a freed top of the heap over 128 KiB is trimmed), so every training
step maps its activations anew and pays a page fault per 4 KiB page on first touch. With
:func:`keep_freed_memory` blocks of up to 32 MiB (glibc's largest mmap threshold) come from the
heap and freed memory stays with the process for the next step.

This changes the whole process, so the library never calls it on import: ``tcm train`` and
``tcm demo`` call it for their own process (``TCM_MALLOC=default`` turns it off). Where glibc is
absent (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

logger = logging.getLogger(__name__)

ENV = "TCM_MALLOC"
"""``default`` leaves glibc's allocator as it is; anything else (or unset) keeps freed memory."""

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum on 64-bit systems
TRIM_THRESHOLD = 1024 * 1024 * 1024
TOP_PAD = 64 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Set glibc's ``mallopt`` so that freed memory is reused rather than returned.

    Returns whether the settings took effect (``False`` without glibc, or with
    ``TCM_MALLOC=default``).
    """
    if os.environ.get(ENV, "").strip().lower() == "default":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    settings = (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (_M_TOP_PAD, TOP_PAD),
    )
    applied = all(mallopt(option, value) == 1 for option, value in settings)
    logger.debug("glibc mallopt keeps freed memory: %s", applied)
    return applied
