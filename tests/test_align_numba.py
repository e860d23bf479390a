"""numba backend vs the pure-PyTorch reference, through the public align()."""
import numpy as np
import pytest
import torch

from dejavid import align_ref
from dejavid.align import align, dba_accumulate, get_backend

numba = pytest.importorskip("numba")
from dejavid import align_numba  # noqa: E402  (needs numba)

# (lengths of the samples of one batch, F, K, C): covers T in {1, 2, 7, 33, 150},
# F in {1, 3, 1459}, K in {1, 5, 64}, with mixed lengths inside a batch.
SHAPES = [
    ((1,), 3, 1, 2),
    ((1, 2, 7), 3, 5, 3),
    ((33, 1, 150, 2), 1, 5, 2),
    ((7, 33, 2), 1459, 64, 3),
    ((150, 33), 1459, 5, 2),
    ((2, 150, 1, 7), 3, 64, 4),
]
MODES = ["hv", "hvd", "fixed"]
RTOL = {torch.float32: 2e-5, torch.float64: 1e-11}


def _inputs(lengths, F, K, C, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(lengths), F, generator=g, dtype=dtype)
    offsets = torch.tensor([0, *np.cumsum(lengths)], dtype=torch.int64)
    mu = torch.randn(C, K, F, generator=g, dtype=dtype)
    theta = 0.5 * torch.randn(C, K, F, generator=g, dtype=dtype)
    upstream = torch.randn(len(lengths), C, generator=g, dtype=dtype)
    return x, offsets, mu, theta, upstream


def _close(name, got, want, rtol):
    """Max difference relative to the magnitude of the reference, printed first."""
    diff = (got - want).abs().max().item() if got.numel() else 0.0
    scale = max(1.0, want.abs().max().item() if want.numel() else 0.0)
    print(f"{name}: max |diff| = {diff:.3e} (scale {scale:.3e})")
    assert diff <= rtol * scale, f"{name}: max diff {diff} > {rtol} * {scale}"


def _run(backend, x, offsets, mu, theta, upstream, mode, fixed_paths=None):
    x, mu, theta = (t.detach().clone().requires_grad_() for t in (x, mu, theta))
    if mode == "fixed":
        dist, paths = align(x, offsets, mu, theta, paths=fixed_paths, backend=backend)
    else:
        dist, paths = align(x, offsets, mu, theta, step_pattern=mode, backend=backend)
    dist.backward(upstream)
    return dist.detach(), paths, x.grad, mu.grad, theta.grad


def _fixed_paths(x, offsets, mu, theta):
    """Paths of a perturbed snapshot, so they differ from the optimal ones."""
    g = torch.Generator().manual_seed(1)
    snap = mu + 0.5 * torch.randn(mu.shape, generator=g, dtype=mu.dtype)
    return align_ref.align_forward_ref(x, offsets, snap, theta, "hvd")[1]


def _compare(x, offsets, mu, theta, upstream, mode):
    fixed = _fixed_paths(x, offsets, mu, theta) if mode == "fixed" else None
    ref = _run("ref", x, offsets, mu, theta, upstream, mode, fixed)
    fast = _run("numba", x, offsets, mu, theta, upstream, mode, fixed)
    rtol = RTOL[x.dtype]
    assert fast[1].dtype == torch.int32 and fast[1].shape == ref[1].shape
    assert torch.equal(fast[1], ref[1]), "paths differ"
    assert fast[0].dtype == x.dtype
    for name, a, b in zip(("dist", "grad_x", "grad_mu", "grad_theta"),
                          (fast[0], *fast[2:]), (ref[0], *ref[2:])):
        _close(name, a, b, rtol)
    return fast


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"T{'-'.join(map(str, s[0]))}_F{s[1]}_K{s[2]}_C{s[3]}")
def test_parity_with_reference(shape, mode):
    _compare(*_inputs(*shape), mode)


@pytest.mark.parametrize("mode", MODES)
def test_parity_float64(mode):
    _compare(*_inputs((5, 33, 1), 17, 6, 3, dtype=torch.float64), mode)


@pytest.mark.parametrize("mode", MODES)
def test_non_contiguous_inputs(mode):
    lengths, F, K, C = (7, 33, 2), 40, 5, 3
    x, offsets, mu, theta, upstream = _inputs(lengths, F, K, C)
    x_nc = x.t().contiguous().t()                          # transposed view
    mu_nc = mu.transpose(0, 1).contiguous().transpose(0, 1)  # permuted view
    theta_nc = torch.stack([theta, theta], -1)[..., 0]      # strided view
    up_nc = upstream.t().contiguous().t()
    assert not (x_nc.is_contiguous() or mu_nc.is_contiguous() or theta_nc.is_contiguous())
    fast_nc = _compare(x_nc, offsets, mu_nc, theta_nc, up_nc, mode)
    fixed = _fixed_paths(x, offsets, mu, theta) if mode == "fixed" else None
    fast = _run("numba", x, offsets, mu, theta, upstream, mode, fixed)
    for a, b in zip(fast_nc, fast):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_float64(mode):
    x, offsets, mu, theta, _ = _inputs((3, 1, 4), 2, 3, 2, dtype=torch.float64, seed=3)
    fixed = _fixed_paths(x, offsets, mu, theta) if mode == "fixed" else None

    def dist(x, mu, theta):
        if mode == "fixed":
            return align(x, offsets, mu, theta, paths=fixed, backend="numba")[0]
        return align(x, offsets, mu, theta, step_pattern=mode, backend="numba")[0]

    args = tuple(t.clone().requires_grad_() for t in (x, mu, theta))
    assert torch.autograd.gradcheck(dist, args, eps=1e-6, atol=1e-6)


def test_local_cost_matches_reference():
    lengths = (7, 1, 33)
    x, offsets, mu, theta, _ = _inputs(lengths, 1459, 5, 2)
    ref = align_ref.local_cost_ref(x, offsets, mu, theta)
    fast = align_numba.local_cost_numba(x, offsets, mu, theta)
    for b, T in enumerate(lengths):
        _close(f"D[{b}]", fast[b, ..., :T], ref[b, ..., :T], RTOL[torch.float32])


def test_hvd_distance_matches_dtw_python():
    dtw = pytest.importorskip("dtw")
    x, offsets, mu, theta, _ = _inputs((9, 4), 5, 6, 2, dtype=torch.float64)
    dist, _ = align(x, offsets, mu, theta, step_pattern="hvd", backend="numba")
    D = align_ref.local_cost_ref(x, offsets, mu, theta)
    for b, T in enumerate((9, 4)):
        for c in range(2):
            want = dtw.dtw(D[b, c, :, :T].numpy(), step_pattern=dtw.symmetric1).distance
            assert abs(dist[b, c].item() - want) < 1e-9


@pytest.mark.parametrize("lengths", [(1,), (7, 150, 2, 33)])
def test_dba_accumulate_parity(lengths):
    x, offsets, mu, theta, _ = _inputs(lengths, 1459, 64, 1)
    paths = align_ref.align_forward_ref(x, offsets, mu, torch.zeros_like(theta), "hv")[1]
    s_ref, n_ref = dba_accumulate(x, offsets, paths, backend="ref")
    s_fast, n_fast = dba_accumulate(x, offsets, paths, backend="numba")
    assert s_fast.dtype == x.dtype and n_fast.dtype == n_ref.dtype
    assert torch.equal(n_fast, n_ref)
    _close("dba sums", s_fast, s_ref, RTOL[torch.float32])


def test_backward_is_deterministic():
    x, offsets, mu, theta, upstream = _inputs((33, 7, 150, 2, 33), 300, 16, 5)
    runs = []
    saved = numba.get_num_threads()
    try:
        for threads in (saved, 1, saved):
            numba.set_num_threads(threads)
            runs.append(_run("numba", x, offsets, mu, theta, upstream, "hv"))
    finally:
        numba.set_num_threads(saved)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert torch.equal(a, b)


def test_invalid_fixed_paths_rejected():
    x, offsets, mu, theta, _ = _inputs((3, 2), 4, 2, 1)
    paths = torch.zeros(2, 1, 2, 2, dtype=torch.int32)
    paths[1, 0, 1] = torch.tensor([0, 2])  # hi == T_b
    with pytest.raises(ValueError, match="paths"):
        align(x, offsets, mu, theta, paths=paths, backend="numba")


def test_cpu_dispatch_picks_numba():
    assert align_numba.available()
    assert get_backend("cpu").name == "numba"
    assert get_backend(torch.device("cpu"), "numba") is align_numba.BACKEND
