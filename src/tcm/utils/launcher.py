"""A process started by ``torchrun`` ends with its launcher.

``torchrun`` starts each rank in a session of its own, so a signal to the launcher's process
group (a shell's ``kill -9 %1``, a supervisor stopping the job's group, the OOM killer taking
``torchrun``) does not reach the ranks: they would go on training, and writing checkpoints,
into a folder the user believes stopped, and hold its lock against the relaunch.
:func:`end_with_launcher` asks the kernel (Linux ``prctl(PR_SET_PDEATHSIG)``) to kill this
process the moment its parent ends, and every process it forks from its main thread (the
DataLoader workers) the moment it ends. Checkpoints are written atomically, so a rank killed
at any moment leaves the last complete one, and its lock ends with it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_armed = False
_forked_by_main_thread = False


def _set_parent_death_signal() -> bool:
    """Whether the kernel will send SIGKILL to this process when its parent ends."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _before_fork() -> None:
    global _forked_by_main_thread
    _forked_by_main_thread = threading.current_thread() is threading.main_thread()


def _in_child() -> None:
    # The kernel ties the signal to the thread that forked the child, not to its process:
    # only children of the main thread, which lives as long as the process, may have it.
    if _forked_by_main_thread:
        parent = os.getppid()
        if _set_parent_death_signal() and os.getppid() != parent:
            os._exit(1)  # the parent ended before the signal was set


def under_torchrun() -> bool:
    """Whether ``torchrun`` started this process (it sets ``TORCHELASTIC_RUN_ID``)."""
    return "TORCHELASTIC_RUN_ID" in os.environ and "LOCAL_RANK" in os.environ


def end_with_launcher() -> bool:
    """Make this process and the processes it forks end when their parent ends (Linux); a
    no-op elsewhere or when already done. Call it first thing in the process, from the main
    thread. Whether it is in force.

    Example:
        >>> if under_torchrun():                                       # doctest: +SKIP
        ...     end_with_launcher()   # killing torchrun now kills the ranks and their workers
    """
    global _armed
    if _armed:
        return True
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    if not _set_parent_death_signal():
        logger.debug("prctl(PR_SET_PDEATHSIG) is unavailable: this process may outlive torchrun")
        return False
    if os.getppid() != parent:  # the launcher ended before the signal was set
        os._exit(1)
    os.register_at_fork(before=_before_fork, after_in_child=_in_child)
    _armed = True
    return True
