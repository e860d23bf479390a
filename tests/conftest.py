"""Shared fixtures: the real JapaneseVowels demo written once per test session; the CUDA
kernels compiled for the host (the emulation of kernel_setup/emulation)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

import dejavid.runtime  # noqa: F401  (before torch: sets OpenMP's wait policy for the tests' processes)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def emulated():
    """The CUDA backend's kernels compiled for the host, run on CPU tensors (set them as
    ``dejavid.alignment.cuda._C``); skips without a host C++ compiler."""
    sys.path.insert(0, str(ROOT / "kernel_setup" / "emulation"))
    import host_emulation
    if host_emulation.compiler() is None:
        pytest.skip("no host C++ compiler")
    return host_emulation.EmulatedKernels(host_emulation.build())


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """aeon's JapaneseVowels in the on-disk format (train 270 / val 370 videos)."""
    pytest.importorskip("aeon")
    import prepare_demo
    out = tmp_path_factory.mktemp("jv")
    assert prepare_demo.main(["--out", str(out)]) == 0
    return out


def demo_overrides(data: Path, tmp: Path, **extra) -> list[str]:
    """Command-line overrides pointing configs/japanese_vowels.yaml at ``data``."""
    kv = {"id2feats": data, "id2splits": data / "id2splits.pkl",
          "id2labels": data / "id2labels.pkl", "id2fname": data / "id2fname.pkl",
          "cache_dir": tmp / "cache", "output_dir": tmp / "runs", **extra}
    out = []
    for k, v in kv.items():
        out += [f"--{k}", str(v)]
    return out


DEMO_CONFIG = ROOT / "configs" / "japanese_vowels.yaml"
