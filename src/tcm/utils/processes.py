"""Whether another process of this machine is still running."""

from __future__ import annotations

import os


def pid_namespace() -> str:
    """This process's pid namespace (``""`` where it cannot be read): a pid names the same
    process only within one namespace."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def has_ended(pid: int) -> bool:
    """Whether process ``pid`` (of this pid namespace) has ended; a zombie, which keeps its pid
    until its parent reaps it, has. A process that cannot be looked at counts as running.

    Example:
        >>> has_ended(os.getpid())
        False
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rpartition(b")")[2].split()[:1]
    except OSError:
        return False
    return state in ([b"Z"], [b"X"])
