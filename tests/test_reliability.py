"""Atomic writes and bounded memory on long inputs."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from dejavid.io import atomic_torch_save, atomic_write_text
from dejavid.alignment.op import get_backend


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"v": torch.tensor([1.0])}, path)

    def broken_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoi")          # partial bytes, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        atomic_torch_save({"v": torch.tensor([2.0])}, path)
    monkeypatch.undo()
    assert torch.load(path)["v"].item() == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]   # no temporary left behind


def test_atomic_text_replaces_whole_file(tmp_path):
    p = tmp_path / "m.jsonl"
    atomic_write_text("a\n", p)
    atomic_write_text("b\nc\n", p)
    assert p.read_text() == "b\nc\n"


@pytest.mark.skipif(get_backend("cpu").name != "numba", reason="numba backend not available")
def test_long_video_memory_is_bounded():
    """A 2,000-step video at F = 1459 against C = 4 classes of K = 64: forward + backward
    through the numba backend. A [C, K, T, F] intermediate would be 3 GB; we allow 300 MB
    of peak growth beyond the inputs (O(C*K*T) work arrays are ~2 MB)."""
    code = textwrap.dedent("""
        import resource, torch
        from dejavid.alignment.op import align
        T, F, C, K = 2000, 1459, 4, 64
        x = torch.randn(T, F, requires_grad=True)
        mu = torch.randn(C, K, F, requires_grad=True)
        th = torch.zeros(C, K, F, requires_grad=True)
        off = torch.tensor([0, T])
        small = torch.randn(3, F)
        align(small, torch.tensor([0, 3]), mu[:, :2].detach(), th[:, :2].detach(), "hv")  # JIT
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        d, p = align(x, off, mu, th, "hv", backend="numba")
        d.sum().backward()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert p.shape == (1, C, K, 2) and int(p[0, 0, -1, 1]) == T - 1
        print("peak growth MB", (after - before) / 1024)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    growth = float(res.stdout.split()[-1])
    print(res.stdout)
    assert growth < 300, growth
