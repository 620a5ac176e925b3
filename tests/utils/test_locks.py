"""The folder lock: one holder at a time, never held by the holder's forked children, never
kept by a holder that died."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tcm.errors import OutputError
from tcm.utils.locks import FolderLock

# Takes the lock, forks a child that outlives it (as a pool's worker may), and dies by SIGKILL.
HOLD_FORK_AND_DIE = """
import os, signal, sys, time
from tcm.utils.locks import FolderLock
FolderLock(sys.argv[1], "lock", "a test").acquire()
child = os.fork()
if child == 0:
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
sys.stdin.read()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_lock_is_refused_while_held_and_free_once_its_holder_dies(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_FORK_AND_DIE, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    child = int(holder.stdout.readline())
    try:
        with pytest.raises(OutputError, match=rf"in use by a test \(pid {holder.pid}\)"):
            FolderLock(tmp_path, "lock", "a test").acquire()
        holder.stdin.close()
        assert holder.wait(timeout=30) == -9
        os.kill(child, 0)  # the forked child still runs, and holds no lock
        with FolderLock(tmp_path, "lock", "a test"):
            assert (tmp_path / "lock").read_text().split()[0] == str(os.getpid())
        assert not (tmp_path / "lock").exists()
    finally:
        os.kill(child, 9)
        holder.stdout.close()
