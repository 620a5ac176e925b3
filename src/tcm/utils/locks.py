"""An exclusive lock on a folder, held by one process and never by its forked children.

The lock is a POSIX record lock (``fcntl.lockf``) on a file in the folder. Such a lock belongs
to the process that took it: worker processes forked while it is held do not hold it (unlike a
``flock``, which they would share and keep after the parent dies), and the kernel releases it
when the process ends, however it ends, so a dead holder never blocks anyone. Being the
process's, it is not a lock between threads of one process: a process takes a folder's lock
once (a second :meth:`FolderLock.acquire` there would succeed, and its release free both).
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from tcm.errors import OutputError


class FolderLock:
    """An exclusive lock on ``folder`` (the file ``folder/name``), from :meth:`acquire` to
    :meth:`release`.

    Args:
        folder: the folder; created if needed.
        name: the lock file in it.
        busy: what a refusal says the folder is in use by (``"another tcm prepare"``).

    Example:
        >>> with FolderLock("videos_fast", ".tcm-reencode.lock", "another re-encoding"):  # doctest: +SKIP
        ...     ...                        # a second process is refused until the block ends
    """

    def __init__(self, folder: str | os.PathLike, name: str, busy: str) -> None:
        self.folder = Path(folder)
        self.path = self.folder / name
        self.busy = busy
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        """Take the lock.

        Raises:
            OutputError: another process holds it (the message names its pid).
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # EAGAIN or EACCES, as the system reports a held record lock
                holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown"
                os.close(fd)
                pid, _, host = holder.partition(" ")
                where = f" on {host}" if host and host != socket.gethostname() else ""
                raise OutputError(
                    f"{self.folder} is in use by {self.busy} (pid {pid}{where}); wait for it to end"
                ) from None
            # The holder before us may have removed the file between our open and our lock:
            # the lock counts only on the file that is there now.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock back and remove its file."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)  # closing the descriptor releases the record lock
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
