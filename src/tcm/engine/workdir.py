"""The run folder of ``tcm train``: one run at a time, and never two runs mixed in one folder.

- :class:`WorkDirLock`: an exclusive lock (``fcntl.flock`` on ``.tcm-train.lock``) held for
  the life of a run; a second run into the same folder is refused with the holder's pid. Only
  the main process of a ``torchrun`` group takes it. The kernel releases it when the process
  ends, however it ends: processes forked from the holder (DataLoader workers, which outlive a
  killed parent by seconds) close their copy at once, and a lock still held after its holder
  ended (by a process that inherited it otherwise) is taken over.
- :func:`resume_checkpoint`: what a run may do with the folder it is given. A folder holds a
  run when any of :data:`RUN_FILES` is there; a new run is refused there, ``--resume auto``
  continues the run's own checkpoint (is refused when the run's checkpoint is gone, and starts
  when the run never wrote one), and ``--resume PATH`` is refused when the folder holds a run
  other than PATH's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import weakref
from pathlib import Path

from tcm.engine import training_checkpoint as ckpt
from tcm.engine.training_log import TRAINING_LOG_FILE, read_metrics
from tcm.errors import WorkDirError
from tcm.utils.processes import has_ended, pid_namespace

LOCK_FILE = ".tcm-train.lock"
RUN_FILES = (ckpt.LAST, ckpt.BEST, TRAINING_LOG_FILE)
"""Files whose presence means that a folder holds a run."""

_HELD: weakref.WeakSet[WorkDirLock] = weakref.WeakSet()
"""The locks this process holds."""


def _forget_locks_in_child() -> None:
    # A forked child (a DataLoader worker) shares the holder's lock through the inherited
    # descriptor; closing it leaves the holder the only owner, so the lock ends with it.
    for lock in list(_HELD):
        lock._forget()
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_locks_in_child)


def _abandoned(holder: list[str]) -> bool:
    """Whether the holder named by a lock file (``PID HOST PID-NAMESPACE``) has ended: a
    process of this machine and pid namespace that is gone, though the lock is still held (by
    a process that inherited its descriptor)."""
    if len(holder) != 3 or not holder[0].isdigit():
        return False
    pid, host, namespace = int(holder[0]), holder[1], holder[2]
    if host != socket.gethostname() or not namespace or namespace != pid_namespace():
        return False
    return pid != os.getpid() and has_ended(pid)


class WorkDirLock:
    """An exclusive lock on a run folder, held from :meth:`acquire` to :meth:`release`.

    The lock file names the holder: ``PID HOST PID-NAMESPACE``.

    Example:
        >>> with WorkDirLock("work_dirs/run"):        # doctest: +SKIP
        ...     ...                                   # a second run there is refused
    """

    def __init__(self, work_dir: str | os.PathLike) -> None:
        self.work_dir = Path(work_dir)
        self.path = self.work_dir / LOCK_FILE
        self.created_dir = False
        self._fd: int | None = None

    def acquire(self) -> WorkDirLock:
        """Create the folder if needed and take the lock.

        Raises:
            WorkDirError: the folder is in use by another run, or is not a folder.
        """
        if self.work_dir.exists() and not self.work_dir.is_dir():
            raise WorkDirError(f"{self.work_dir}: exists and is not a folder (the --work-dir)")
        if not self.work_dir.exists():
            self.work_dir.mkdir(parents=True)
            self.created_dir = True
        with self._folder_guard() as guarded:
            fd = self._lock_file(may_take_over=guarded)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()} {pid_namespace()}\n".encode())
        self._fd = fd
        _HELD.add(self)
        return self

    @contextlib.contextmanager
    def _folder_guard(self):
        """Hold a lock on the folder itself while taking the run lock, so that taking over an
        abandoned lock never races with a run taking the lock; yields whether it is held (not
        on every network file system)."""
        folder: int | None = None
        with contextlib.suppress(OSError):
            folder = os.open(self.work_dir, os.O_RDONLY | os.O_CLOEXEC)
            try:
                fcntl.flock(folder, fcntl.LOCK_EX)
            except OSError:
                os.close(folder)
                folder = None
        try:
            yield folder is not None
        finally:
            if folder is not None:
                os.close(folder)

    def _lock_file(self, *, may_take_over: bool) -> int:
        """A descriptor of the lock file that holds the lock."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode("utf-8", "replace").split()
                if may_take_over and _abandoned(holder):
                    with contextlib.suppress(FileNotFoundError):
                        if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                            self.path.unlink()  # the holder's heirs keep the old file
                    os.close(fd)
                    continue
                os.close(fd)
                pid = holder[0] if holder else "unknown"
                host = holder[1] if len(holder) > 1 else ""
                where = f" on {host}" if host and host != socket.gethostname() else ""
                raise WorkDirError(
                    f"{self.work_dir} is in use by another run (pid {pid}{where}); wait for it "
                    "to end or choose another --work-dir"
                ) from None
            # The holder before us may have removed the file between our open and our lock:
            # the lock counts only on the file that is there now.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def _forget(self) -> None:
        """Close the descriptor without releasing the lock (in a forked child)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def release(self, *, remove_dir: bool = False) -> None:
        """Give the lock back; with ``remove_dir``, also remove the folder if this lock created
        it and it is empty (a run refused before writing anything leaves nothing behind)."""
        if self._fd is None:
            return
        _HELD.discard(self)
        self.path.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        if remove_dir and self.created_dir:
            with contextlib.suppress(OSError):  # not empty: someone else's files
                self.work_dir.rmdir()

    def __enter__(self) -> WorkDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def run_files(work_dir: str | os.PathLike) -> list[str]:
    """The :data:`RUN_FILES` present in ``work_dir``."""
    work_dir = Path(work_dir)
    return [name for name in RUN_FILES if (work_dir / name).exists()]


def resume_checkpoint(work_dir: str | os.PathLike, resume: str | os.PathLike | None) -> Path | None:
    """The checkpoint a run into ``work_dir`` continues from (``None``: a new run), after
    checking that the run may use the folder.

    Args:
        resume: ``None`` (a new run), ``"auto"`` or the path of a checkpoint.

    Raises:
        WorkDirError: a new run into a folder that holds a run; ``"auto"`` in a folder whose
            run has lost its checkpoint; a checkpoint of another folder resumed into a folder
            that holds a run.
        FileNotFoundError: ``resume`` names a file that does not exist.
    """
    work_dir = Path(work_dir)
    present = run_files(work_dir)
    listed = ", ".join(present)
    if resume is None:
        if present:
            raise WorkDirError(
                f"{work_dir} already holds a run ({listed}); continue it with --resume auto or "
                "choose another --work-dir"
            )
        return None
    if str(resume) == "auto":
        path = ckpt.find_resume_checkpoint(work_dir)
        finished = ckpt.BEST in present or any(
            row.get("kind") == "epoch" for row in read_metrics(work_dir / TRAINING_LOG_FILE)
        )
        if path is None and finished:
            raise WorkDirError(
                f"{work_dir} holds a run ({listed}) but not its checkpoint {ckpt.LAST}: it "
                "cannot be continued, and a new run would replace its files; choose another "
                "--work-dir"
            )
        return path
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume {path}: no such checkpoint file")
    if present and path.resolve().parent != work_dir.resolve():
        raise WorkDirError(
            f"{work_dir} holds another run ({listed}); resume {path} in its own folder "
            f"(--work-dir {path.parent}) or into an empty --work-dir"
        )
    return path
