"""CUDA backend (dejavid.alignment.cuda + kernel_setup/csrc) vs the pure-PyTorch reference.

The same kernels are exercised two ways:

- on a GPU with the built extension, through the public align() (skipped without
  a CUDA device or without ``pip install --no-build-isolation ./kernel_setup``);
- on the host: kernel_setup/emulation compiles csrc/kernels.cu for the CPU (each
  CUDA thread a host thread, real barriers and warp votes) and the CUDA
  backend's Python op runs over it on CPU tensors (skipped without g++).  Tiny
  shapes only; the per-pair DP and backtrack are also checked against the
  reference on costs full of ties.
"""
import functools
import sys
from pathlib import Path

import pytest
import torch

from dejavid.alignment import cuda as align_cuda
from dejavid.alignment import ref as align_ref
from dejavid.alignment.op import align, get_backend

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "kernel_setup" / "emulation"))
import host_emulation  # noqa: E402
from parity import (MODES, RTOL, SHAPES as _BASE_SHAPES, TIE_KINDS, TIE_SHAPES,  # noqa: E402
                    assert_close, check_dba_accumulate, check_local_cost, check_strided_inputs,
                    make_inputs, gradcheck_align, perturbed_paths, run_align, tie_fixed_paths,
                    tie_inputs)

HAVE_GPU = torch.cuda.is_available() and align_cuda.available()
needs_gpu = pytest.mark.skipif(
    not HAVE_GPU, reason="needs a CUDA device and the built extension "
                         "(pip install --no-build-isolation ./kernel_setup)")
needs_cxx = pytest.mark.skipif(host_emulation.compiler() is None,
                               reason="host emulation needs a C++20 compiler (g++)")

# The numba backend's shapes plus one batch holding every length 1 .. 150.
SHAPES = _BASE_SHAPES + [(tuple(range(1, 151)), 3, 7, 3)]
# Host emulation runs every CUDA thread as a host thread: smaller, still crossing
# every tile edge (rows > 128, columns > 64, F not a multiple of 16, F = 1, T = 1).
EMU_SHAPES = [
    ((1,), 3, 1, 2),
    ((1, 2, 7), 17, 5, 3),
    ((33, 1, 150, 2), 1, 5, 2),
    ((7, 33, 2), 1459, 64, 3),
    ((2, 70, 1, 7), 35, 64, 3),
    (tuple(range(1, 151)), 2, 3, 2),
]


def _rtol(dtype, batch):
    """Gradients sum over every sample of the batch: float32 error grows with B."""
    return RTOL[dtype] * max(1.0, batch / 16) if dtype == torch.float32 else RTOL[dtype]


def _shape_id(s):
    lengths = s[0]
    t = "1..150" if len(lengths) > 10 else "-".join(map(str, lengths))
    return f"T{t}_F{s[1]}_K{s[2]}_C{s[3]}"


def _exact(x, offsets, mu, theta, upstream, paths):
    """Reference distance and gradients along ``paths``, evaluated in float64.

    float32 sums over many samples round differently in every implementation
    (the float32 reference included); float64 is the yardstick for all of them.
    """
    x, mu, theta, upstream = (t.detach().double() for t in (x, mu, theta, upstream))
    dist = align_ref.path_cost_ref(x, offsets, mu, theta, paths)
    return (dist, *align_ref.path_grads_ref(x, offsets, mu, theta, paths, upstream, True))


def _check_results(fast, ref_paths, exact, dtype):
    """fast = (dist, paths, grad_x, grad_mu, grad_theta); exact = float64 (dist, grads)."""
    assert fast[1].dtype == torch.int32 and fast[1].shape == ref_paths.shape
    assert torch.equal(fast[1].cpu(), ref_paths.cpu()), "paths differ"
    for name, a, b in zip(("dist", "grad_x", "grad_mu", "grad_theta"), (fast[0], *fast[2:]), exact):
        assert a.dtype == dtype, name
        assert_close(name, a, b, _rtol(dtype, ref_paths.shape[0]))


# =========================================================================== GPU


def _compare_gpu(x, offsets, mu, theta, upstream, mode, fixed_paths=perturbed_paths):
    fixed = fixed_paths(x, offsets, mu, theta) if mode == "fixed" else None
    ref = run_align("ref", x, offsets, mu, theta, upstream, mode, fixed)
    fast = run_align("cuda", x, offsets, mu, theta, upstream, mode, fixed)
    assert fast[0].device == x.device and fast[1].device == x.device
    _check_results(fast, ref[1], _exact(x, offsets, mu, theta, upstream, ref[1]), x.dtype)
    return fast


@needs_gpu
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=_shape_id)
def test_gpu_parity_with_reference(shape, mode):
    _compare_gpu(*make_inputs(*shape, device="cuda"), mode)


@needs_gpu
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", TIE_KINDS)
def test_gpu_parity_on_exact_ties(kind, mode):
    # Exact ties in the accumulated cost and zero differences mu - x on the paths
    # (see parity.TIE_KINDS): the tie rules and sign(0) = 0 decide the results.
    for shape in TIE_SHAPES:
        inputs = tuple(t.cuda() for t in tie_inputs(kind, *shape))
        _compare_gpu(*inputs, mode, fixed_paths=tie_fixed_paths)


@needs_gpu
@pytest.mark.parametrize("mode", MODES)
def test_gpu_parity_float64(mode):
    _compare_gpu(*make_inputs((5, 33, 1), 17, 6, 3, dtype=torch.float64, device="cuda"), mode)


@needs_gpu
@pytest.mark.parametrize("mode", MODES)
def test_gpu_non_contiguous_inputs(mode):
    check_strided_inputs(_compare_gpu, functools.partial(run_align, "cuda"), mode, device="cuda")


@needs_gpu
@pytest.mark.parametrize("mode", MODES)
def test_gpu_gradcheck_float64(mode):
    assert gradcheck_align("cuda", mode, device="cuda")


@needs_gpu
def test_gpu_local_cost_matches_reference():
    # 155 rows (5 x 31 classes): two row tiles
    check_local_cost(align_cuda.local_cost_cuda, (7, 1, 33, 70), 1459, 5, 31, device="cuda")


@needs_gpu
@pytest.mark.parametrize("lengths", [(1,), (7, 150, 2, 33)])
def test_gpu_dba_accumulate_parity(lengths):
    check_dba_accumulate("cuda", lengths, device="cuda")


@needs_gpu
def test_gpu_results_are_deterministic():
    x, offsets, mu, theta, upstream = make_inputs((33, 7, 150, 2, 33), 300, 16, 5, device="cuda")
    first = run_align("cuda", x, offsets, mu, theta, upstream, "hv")
    for _ in range(2):
        for a, b in zip(first, run_align("cuda", x, offsets, mu, theta, upstream, "hv")):
            assert torch.equal(a, b)


@needs_gpu
@pytest.mark.parametrize("mode", ["hv", "hvd"])
def test_gpu_chunked_forward_equals_single_chunk(mode, monkeypatch):
    x, offsets, mu, theta, _ = make_inputs((33, 7, 150, 2, 33, 1), 20, 8, 3, device="cuda")
    whole = align_cuda.align_forward_cuda(x, offsets, mu, theta, mode)
    monkeypatch.setattr(align_cuda, "COST_BUDGET", 3 * 8 * 40)  # several chunks, one over budget
    assert len(align_cuda._chunks(offsets, x.shape[0], 24, align_cuda.COST_BUDGET)) > 2
    chunked = align_cuda.align_forward_cuda(x, offsets, mu, theta, mode)
    assert torch.equal(whole[0], chunked[0]) and torch.equal(whole[1], chunked[1])


@needs_gpu
def test_gpu_invalid_fixed_paths_rejected():
    x, offsets, mu, theta, _ = make_inputs((3, 2), 4, 2, 1, device="cuda")
    paths = torch.zeros(2, 1, 2, 2, dtype=torch.int32, device="cuda")
    paths[1, 0, 1] = torch.tensor([0, 2])  # hi == T_b
    with pytest.raises(ValueError, match="paths"):
        align(x, offsets, mu, theta, paths=paths, backend="cuda")


@needs_gpu
def test_gpu_binding_checks_inputs():
    x, offsets, mu, theta, _ = make_inputs((3, 2), 4, 2, 1, device="cuda")
    w = theta.exp()
    out = x.new_empty(1, 2, 5)
    with pytest.raises(RuntimeError, match="mu must be a CUDA tensor"):
        align_cuda._C.local_cost(x, mu.cpu(), w, out)
    with pytest.raises(RuntimeError, match="contiguous"):
        align_cuda._C.local_cost(x, mu, w, x.new_empty(1, 5, 2).transpose(1, 2))
    with pytest.raises(RuntimeError, match="shape"):
        align_cuda._C.local_cost(x, mu, w, x.new_empty(1, 2, 4))
    with pytest.raises(ValueError, match="float32 and float64"):
        align_cuda.align_forward_cuda(x.half(), offsets, mu.half(), theta.half(), "hv")


@needs_gpu
def test_gpu_dispatch_picks_cuda():
    assert get_backend("cuda").name == "cuda"
    assert get_backend(torch.device("cuda"), "cuda") is align_cuda.BACKEND


# =========================================================================== host emulation

@pytest.fixture
def emulated_backend(emulated, monkeypatch):
    monkeypatch.setattr(align_cuda, "_C", emulated)
    return align_cuda.BACKEND


def _run_backend(be, x, offsets, mu, theta, upstream, mode, fixed_paths=None):
    """(dist, paths, grad_x, grad_mu, grad_theta) from a Backend's four functions."""
    if mode == "fixed":
        paths = fixed_paths
        dist = be.path_cost(x, offsets, mu, theta, paths)
    else:
        dist, paths = be.align_forward(x, offsets, mu, theta, mode)
    gx, gmu, gtheta = be.path_grads(x, offsets, mu, theta, paths, upstream, True)
    return dist, paths, gx, gmu, gtheta


def _compare_backend(be, x, offsets, mu, theta, upstream, mode, fixed_paths=perturbed_paths):
    fixed = fixed_paths(x, offsets, mu, theta) if mode == "fixed" else None
    ref_paths = fixed if mode == "fixed" else align_ref.align_forward_ref(x, offsets, mu, theta,
                                                                          mode)[1]
    fast = _run_backend(be, x, offsets, mu, theta, upstream, mode, fixed)
    _check_results(fast, ref_paths, _exact(x, offsets, mu, theta, upstream, ref_paths), x.dtype)
    return fast


@needs_cxx
@pytest.mark.parametrize("pattern", ["hv", "hvd"])
def test_emulated_pair_steps_follow_tie_rules(emulated, pattern):
    """accumulate_pair / backtrack_pair (dtw_pair.h) on integer costs full of ties."""
    g = torch.Generator().manual_seed(0)
    for K, T in [(1, 1), (1, 5), (5, 1), (2, 2), (3, 4), (6, 6), (9, 4), (4, 13), (17, 9),
                 (1, 40), (3, 17), (5, 33), (20, 35)]:  # crossing 16-cell row chunks
        for _ in range(10):
            D = torch.randint(0, 3, (K, T), generator=g).double()
            A, path = emulated.dtw_pair(D, pattern == "hvd")
            A_ref = align_ref.accumulate_ref(D.view(1, 1, K, T), pattern)
            p_ref = align_ref.backtrack_ref(A_ref, torch.tensor([T]), pattern)
            assert torch.equal(A, A_ref[0, 0]), (K, T)
            assert torch.equal(path, p_ref[0, 0]), (K, T, D)


@needs_cxx
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", EMU_SHAPES, ids=_shape_id)
def test_emulated_parity_with_reference(emulated_backend, shape, mode):
    _compare_backend(emulated_backend, *make_inputs(*shape), mode)


@needs_cxx
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", TIE_KINDS)
def test_emulated_parity_on_exact_ties(emulated_backend, kind, mode):
    # The whole backend (forward DP and backtrack in kernels.cu, path cost, every
    # gradient) on the tie cases of the numba test: paths equal to the reference's.
    for shape in TIE_SHAPES:
        _compare_backend(emulated_backend, *tie_inputs(kind, *shape), mode,
                         fixed_paths=tie_fixed_paths)


@needs_cxx
@pytest.mark.parametrize("mode", MODES)
def test_emulated_parity_float64(emulated_backend, mode):
    _compare_backend(emulated_backend, *make_inputs((5, 33, 1), 17, 6, 3, dtype=torch.float64), mode)


@needs_cxx
def test_emulated_non_contiguous_inputs(emulated_backend):
    check_strided_inputs(functools.partial(_compare_backend, emulated_backend),
                         functools.partial(_run_backend, emulated_backend), "hv")


@needs_cxx
@pytest.mark.parametrize("mode", ["hv", "hvd"])
def test_emulated_chunked_forward_equals_single_chunk(emulated_backend, mode, monkeypatch):
    x, offsets, mu, theta, _ = make_inputs((33, 7, 150, 2, 33, 1), 20, 8, 3)
    whole = align_cuda.align_forward_cuda(x, offsets, mu, theta, mode)
    monkeypatch.setattr(align_cuda, "COST_BUDGET", 3 * 8 * 40)  # several chunks, one over budget
    chunks = align_cuda._chunks(offsets, x.shape[0], 24, align_cuda.COST_BUDGET)
    assert chunks == [(0, 2, 40), (2, 3, 150), (3, 6, 36)]
    chunked = align_cuda.align_forward_cuda(x, offsets, mu, theta, mode)
    assert torch.equal(whole[0], chunked[0]) and torch.equal(whole[1], chunked[1])


@needs_cxx
def test_emulated_local_cost_tile_edges(emulated_backend):
    # 131 columns: three column tiles; 155 rows (5 x 31 classes): two row tiles
    check_local_cost(align_cuda.local_cost_cuda, (7, 1, 33, 90), 35, 5, 31)


@needs_cxx
@pytest.mark.parametrize("lengths", [(1,), (7, 150, 2, 33)])
def test_emulated_dba_accumulate_parity(emulated_backend, lengths):
    x, offsets, mu, theta, _ = make_inputs(lengths, 37, 64, 1)
    paths = align_ref.align_forward_ref(x, offsets, mu, torch.zeros_like(theta), "hv")[1]
    s_ref, n_ref = align_ref.dba_accumulate_ref(x, offsets, paths)
    s_fast, n_fast = emulated_backend.dba_accumulate(x, offsets, paths)
    assert s_fast.dtype == x.dtype and n_fast.dtype == n_ref.dtype
    assert torch.equal(n_fast, n_ref)
    assert_close("dba sums", s_fast, s_ref, RTOL[torch.float32])


@needs_cxx
def test_emulated_invalid_paths_and_dtypes_rejected(emulated_backend):
    x, offsets, mu, theta, upstream = make_inputs((3, 2), 4, 2, 1)
    paths = torch.zeros(2, 1, 2, 2, dtype=torch.int32)
    paths[1, 0, 1] = torch.tensor([0, 2])  # hi == T_b
    with pytest.raises(ValueError, match="paths"):
        emulated_backend.path_cost(x, offsets, mu, theta, paths)
    with pytest.raises(ValueError, match="paths"):
        emulated_backend.path_grads(x, offsets, mu, theta, paths, upstream, False)
    with pytest.raises(ValueError, match="float32 and float64"):
        emulated_backend.align_forward(x.half(), offsets, mu.half(), theta.half(), "hv")


def test_module_imports_without_extension():
    """Without the built extension the backend reports itself unavailable (dispatch falls back)."""
    assert align_cuda.BACKEND.name == "cuda"
    if align_cuda._C is None:
        assert not align_cuda.available()
