"""Atomic file writes (a crash leaves the previous good file, never half of a new one)
and the run-folder lock."""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch


def _current_umask() -> int:
    # os.umask can only be read by setting it; put the old value straight back.
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def plain_write_mode(path: Path) -> int:
    """The permission bits a plain ``open(path, 'w')`` would leave: an existing file keeps
    its mode, a new one gets 0o666 less the user's umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_current_umask()


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The file ends with the mode a plain write would give it (``mkstemp`` makes its
    files 0600, which would hide checkpoints and caches from collaborators on a
    shared file system)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, plain_write_mode(path))
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_write_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def append_line(path: str | Path, line: str) -> None:
    """Append one line and flush it to disk (a line is either there whole or not at all
    for the readers here, which skip a trailing partial line)."""
    with open(path, "a") as fh:
        fh.write(line.rstrip("\n") + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def check_writable_dir(path: str | Path, what: str) -> None:
    """ValueError unless files can be created in folder ``path`` (it exists and is writable,
    or its nearest existing parent is a writable folder it can be created in).  Scripts call
    it for every output location before any long work, so a bad location fails at once."""
    path = Path(path)
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{what} {path} cannot be used: {probe} is not a folder; pick "
                         f"another location")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path} cannot be used: {probe} is not writable; pick "
                         f"another location")


def is_read_only_dir(path: str | Path) -> bool:
    """Whether ``path`` is an existing folder in which no file can be created."""
    path = Path(path)
    return path.is_dir() and not os.access(path, os.W_OK | os.X_OK)


def check_writable_file(path: str | Path, what: str) -> None:
    """ValueError unless file ``path`` can be written (created or replaced)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{what} {path} is not writable; pick another file")
    check_writable_dir(path.parent, f"the folder of {what}")


def _same(a: Path, b: Path) -> bool:
    """Whether two paths name one file (the same resolved path, or hard/sym links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_not_managed(path: str | Path, what: str, inputs: dict, folders: dict) -> None:
    """ValueError unless output ``path`` is none of the files ``inputs`` names
    ({description: path}: what the same command reads) and lies in none of the ``folders``
    ({description: folder}: feature files, caches and run folders dejavid manages).  Empty
    or None entries are skipped.  Writing there would replace a file the command or a
    later run needs with something else."""
    path = Path(path)
    for name, other in inputs.items():
        if other and _same(path, Path(other)):
            raise ValueError(f"{what} {path} is {name} ({other}), which this command reads; "
                             f"writing it would replace that file: pick another path")
    target = path.resolve()
    for name, folder in folders.items():
        if folder and (target == Path(folder).resolve()
                       or target.is_relative_to(Path(folder).resolve())):
            raise ValueError(f"{what} {path} lies in {name} ({folder}), whose files dejavid "
                             f"manages; pick a path outside it")


_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


def lock_file(path: str | Path, what: str, lost: str, on_wait=None) -> int | None:
    """Open ``path`` (created if needed) with an exclusive ``fcntl.flock``; returns the
    descriptor, whose closing releases the lock (as does the end of the process,
    however it ends, so a crash never leaves a stale lock).

    When another process holds the lock: returns None if ``on_wait`` is None, else
    calls ``on_wait()`` (to say so) and waits for it.  On a file system without locks
    (some network file systems) the work goes on unlocked, with a warning naming
    ``what`` and saying what is ``lost``.  OSError from opening propagates."""
    path = Path(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, plain_write_mode(path))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is None:
                os.close(fd)
                return None
            on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        if exc.errno not in _NO_LOCKS:
            os.close(fd)
            raise
        warnings.warn(f"{what}: the file system does not support locks ({exc.strerror}); {lost}",
                      RuntimeWarning, stacklevel=3)
    return fd


class RunLock:
    """An exclusive lock on a run folder, held for a run's lifetime.

    :func:`lock_file` on ``run_dir/.lock``.  The file records the holder (pid, host,
    start time) for the message a second run gets.  The file itself stays (removing
    it would let a third run lock a fresh inode while the second still holds the old
    one)."""

    FILE = ".lock"

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        """Take the lock; ValueError naming the holder when another process has it."""
        path = self.run_dir / self.FILE
        fd = lock_file(path, f"run folder {self.run_dir}",
                       "a second run on this folder would not be stopped")
        if fd is None:
            try:
                holder = path.read_text(errors="replace").strip()
            except OSError:
                holder = ""
            raise ValueError(f"run folder {self.run_dir} is in use by another run "
                             f"({holder or 'another process'}); wait for it to finish, or pick "
                             f"another --run_name")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}, started "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)   # closing the descriptor drops the flock
            self._fd = None
