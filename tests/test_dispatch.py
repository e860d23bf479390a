"""The single dispatch point: which backend runs where, and how a missing one is reported."""
import warnings

import pytest
import torch

from dejavid.alignment import op as align_mod
from dejavid.alignment.op import CUDA_BUILD_COMMAND, get_backend

try:
    import dejavid_kernels  # noqa: F401  (only whether it imports)
    HAVE_KERNELS = True
except ImportError:
    HAVE_KERNELS = False


@pytest.fixture
def fresh_dispatch(monkeypatch):
    """Forget what was loaded and warned, so each test sees a first call."""
    monkeypatch.setattr(align_mod, "_loaded", {})
    monkeypatch.setattr(align_mod, "_why_not", {})
    monkeypatch.setattr(align_mod, "_warned_cuda", False)


@pytest.mark.skipif(HAVE_KERNELS and torch.cuda.is_available(), reason="the CUDA kernels are usable here")
def test_cuda_without_kernels_falls_back_to_reference_with_one_warning(fresh_dispatch):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = get_backend("cuda")
        second = get_backend(torch.device("cuda:0"))
    assert first is align_mod.REF and second is align_mod.REF
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1, msgs
    assert CUDA_BUILD_COMMAND in msgs[0]
    if not HAVE_KERNELS:
        assert "import error" in msgs[0] and "dejavid_kernels" in msgs[0]


@pytest.mark.skipif(HAVE_KERNELS and torch.cuda.is_available(), reason="the CUDA kernels are usable here")
def test_explicit_cuda_backend_that_cannot_run_is_an_error(fresh_dispatch):
    with pytest.raises(ValueError, match="not available here") as info:
        get_backend("cuda", "cuda")
    assert CUDA_BUILD_COMMAND in str(info.value)


def test_backend_on_wrong_device_is_an_error():
    with pytest.raises(ValueError, match="runs on cuda tensors"):
        get_backend("cpu", "cuda")
    with pytest.raises(ValueError, match="runs on cpu tensors"):
        get_backend("cuda", "numba")


def test_unknown_backend_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'auto', 'ref', 'numba', 'cuda'"):
        get_backend("cpu", "triton")


def test_reference_is_available_everywhere():
    assert get_backend("cpu", "ref").name == "ref"
    assert get_backend("cuda", "ref").name == "ref"


def test_cpu_default_is_numba_when_installed(fresh_dispatch):
    pytest.importorskip("numba")
    assert get_backend("cpu").name == "numba"
