"""Resident memory of this process (Linux), for measuring peak extra memory of a call."""

from __future__ import annotations


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
