"""Memory: resident memory of this process (Linux), for measuring peak extra memory of a call,
and the machine's memory, for refusing work that cannot fit."""

from __future__ import annotations

import os


def reset_peak_resident() -> None:
    """Reset the peak resident set (``VmHWM``) to the current one (writes 5 to clear_refs)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def resident_bytes(peak: bool = False) -> int:
    """Current resident set (``VmRSS``), or its peak since the last reset (``VmHWM``)."""
    key = "VmHWM:" if peak else "VmRSS:"
    with open("/proc/self/status") as handle:
        kib = next(int(line.split()[1]) for line in handle if line.startswith(key))
    return kib * 1024


def physical_memory_bytes() -> int | None:
    """The machine's memory (RAM), or ``None`` where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(count: float) -> str:
    """``1.5 GB``, ``320.0 MB`` (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024:
            return f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"
