"""Atomic file writes: a crash leaves the previous good file, never half of a new one."""
from __future__ import annotations

import os
import tempfile
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
