"""Atomic writes keep the permission bits a plain write would give (issue: files were 0600)."""
from __future__ import annotations

import os
import stat

import pytest
import torch

from dejavid.io import atomic_path, atomic_torch_save, atomic_write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    old = os.umask(0o022)
    try:
        yield lambda m: os.umask(m)
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
@pytest.mark.parametrize("writer", ["text", "torch"])
def test_new_file_gets_the_umask_mode(tmp_path, umask, mask, writer):
    umask(mask)
    path = tmp_path / "sub" / "out.bin"
    if writer == "text":
        atomic_write_text("hello", path)
    else:
        atomic_torch_save({"a": torch.ones(2)}, path)
    plain = tmp_path / "plain.bin"
    plain.write_text("x")
    assert _mode(path) == _mode(plain) == 0o666 & ~mask


def test_rewrite_keeps_the_existing_mode(tmp_path, umask):
    path = tmp_path / "metrics.jsonl"
    path.write_text("old\n")
    os.chmod(path, 0o640)
    atomic_write_text("new\n", path)
    assert path.read_text() == "new\n"
    assert _mode(path) == 0o640


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, umask):
    path = tmp_path / "best.pt"
    path.write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert path.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]
