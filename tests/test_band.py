"""The warping band (config key ``band``): alignments outside a Sakoe-Chiba-style band
around the diagonal of each (K, T) grid are excluded, in every backend.

- band_rows: the cells it allows, the path it guarantees, band >= 1 = every cell;
- a banded alignment equals brute force over all monotone paths inside the band;
- band = 1 (full) gives bitwise the results of no band, on ref and numba;
- numba and the host-emulated CUDA kernels match the reference with a band;
- float64 gradcheck with a band on the reference backend;
- DBA and 1-NN DTW take the band.
"""
import numpy as np
import pytest
import torch

from dejavid.alignment import cuda as align_cuda
from dejavid.alignment import ref as align_ref
from dejavid.alignment.backend import band_rows
from dejavid.alignment.op import align

from parity import RTOL, assert_close, check_gpu_forward, make_inputs

BAND_SHAPES = [((1, 2, 7), 3, 5, 3), ((33, 1, 40, 2), 1, 5, 2), ((7, 33, 2), 20, 8, 3),
               ((2, 40, 1, 7), 3, 12, 4), ((2, 90, 1, 7, 13), 1, 12, 3)]


def _numpy_banded(D, rows, hvd):
    """Accumulated cost of D [K, T] with cells outside ``rows`` [K, 2] excluded (plain DP)."""
    K, T = D.shape
    A = np.full((K, T), np.inf)
    for i in range(K):
        for j in range(rows[i, 0], rows[i, 1] + 1):
            if i == 0 and j == 0:
                A[i, j] = D[0, 0]
                continue
            best = min(A[i - 1, j] if i else np.inf, A[i, j - 1] if j else np.inf)
            if hvd and i and j:
                best = min(best, A[i - 1, j - 1])
            A[i, j] = D[i, j] + best
    return A


@pytest.mark.parametrize("K,T", [(1, 1), (1, 9), (9, 1), (2, 2), (8, 2), (8, 30), (30, 8),
                                 (11, 11), (64, 150)])
@pytest.mark.parametrize("band", [0.01, 0.1, 0.3, 1.0])
def test_band_rows_allow_a_path_and_contain_the_classic_window(K, T, band):
    rows = band_rows(torch.tensor([T]), K, band)[0].long()
    lo, hi = rows[:, 0], rows[:, 1]
    assert int(lo[0]) == 0 and int(hi[-1]) == T - 1
    assert bool((lo <= hi).all()) and bool((hi < T).all()) and bool((lo >= 0).all())
    assert bool((lo[1:] >= lo[:-1]).all()) and bool((hi[1:] >= hi[:-1]).all())
    assert bool((hi[:-1] >= lo[1:]).all()), "consecutive rows must share a column (hv path)"
    for i in range(K):  # every cell within the fraction of the diagonal is allowed
        for j in range(T):
            near = K == 1 or T == 1 or abs(i / (K - 1) - j / (T - 1)) <= band
            if near:
                assert lo[i] <= j <= hi[i], (i, j)
    if band >= 1.0:
        assert bool((lo == 0).all()) and bool((hi == T - 1).all())


def test_band_rows_equal_lengths_is_the_classic_sakoe_chiba_window():
    rows = band_rows(torch.tensor([11]), 11, 0.1)[0]
    i = torch.arange(11)
    assert torch.equal(rows[:, 0].long(), (i - 1).clamp(min=0))
    assert torch.equal(rows[:, 1].long(), (i + 1).clamp(max=10))


@pytest.mark.parametrize("band", ["wide", -0.1, 0.0, True])
def test_invalid_band_rejected(band):
    x, offsets, mu, theta, _ = make_inputs((3,), 2, 2, 1)
    with pytest.raises(ValueError, match="band"):
        align(x, offsets, mu, theta, band=band, backend="ref")


@pytest.mark.parametrize("pattern", ["hv", "hvd"])
@pytest.mark.parametrize("band", [0.05, 0.2])
def test_banded_distance_equals_plain_dp_inside_the_band(pattern, band):
    x, offsets, mu, theta, _ = make_inputs((1, 9, 30, 4), 3, 7, 2, dtype=torch.float64, seed=5)
    dist, paths = align(x, offsets, mu, theta, pattern, band=band, backend="ref")
    D = align_ref.local_cost_ref(x, offsets, mu, theta)
    rows = band_rows(offsets[1:] - offsets[:-1], 7, band)
    for b, T in enumerate((offsets[1:] - offsets[:-1]).tolist()):
        for c in range(2):
            A = _numpy_banded(D[b, c, :, :T].numpy(), rows[b].numpy(), pattern == "hvd")
            assert dist[b, c].item() == pytest.approx(A[-1, -1], rel=1e-12)
            lo, hi = paths[b, c, :, 0], paths[b, c, :, 1]
            assert bool((lo >= rows[b, :, 0]).all()) and bool((hi <= rows[b, :, 1]).all())


def test_narrow_band_costs_at_least_the_free_path():
    x, offsets, mu, theta, _ = make_inputs((9, 30, 4), 3, 7, 2, dtype=torch.float64, seed=2)
    free, _ = align(x, offsets, mu, theta, "hv", backend="ref")
    banded, _ = align(x, offsets, mu, theta, "hv", band=0.05, backend="ref")
    assert bool((banded >= free).all()) and bool((banded > free).any())


@pytest.mark.parametrize("backend", ["ref", "numba"])
@pytest.mark.parametrize("pattern", ["hv", "hvd"])
def test_full_band_equals_no_band_bitwise(backend, pattern):
    x, offsets, mu, theta, up = make_inputs((1, 2, 7, 33), 20, 8, 3)
    runs = []
    for band in (None, 1.0, 5.0):
        xr, mr, tr = (t.clone().requires_grad_() for t in (x, mu, theta))
        dist, paths = align(xr, offsets, mr, tr, pattern, band=band, backend=backend)
        dist.backward(up)
        runs.append((dist, paths, xr.grad, mr.grad, tr.grad))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert torch.equal(a, b)


def _compare(backend_fn, shape, pattern, band):
    x, offsets, mu, theta, _ = make_inputs(*shape)
    rows = band_rows(offsets[1:] - offsets[:-1], mu.shape[1], band)
    d_ref, p_ref = align_ref.align_forward_ref(x, offsets, mu, theta, pattern, rows)
    d, p = backend_fn(x, offsets, mu, theta, pattern, rows)
    assert torch.equal(p.cpu(), p_ref), "paths differ"
    assert_close("dist", d, d_ref, RTOL[torch.float32])


@pytest.mark.parametrize("pattern", ["hv", "hvd"])
@pytest.mark.parametrize("band", [0.05, 0.25])
@pytest.mark.parametrize("shape", BAND_SHAPES)
def test_numba_band_parity(shape, pattern, band):
    pytest.importorskip("numba")
    from dejavid.alignment import numba as align_numba
    _compare(align_numba.align_forward_numba, shape, pattern, band)


@pytest.mark.parametrize("pattern", ["hv", "hvd"])
@pytest.mark.parametrize("band", [0.05, 0.25])
@pytest.mark.parametrize("shape", BAND_SHAPES[:3])
def test_emulated_cuda_band_parity(emulated, monkeypatch, shape, pattern, band):
    monkeypatch.setattr(align_cuda, "_C", emulated)
    _compare(align_cuda.align_forward_cuda, shape, pattern, band)


def test_emulated_cuda_band_across_chunks(emulated, monkeypatch):
    """The band's mask follows each chunk's own columns when the forward is chunked."""
    monkeypatch.setattr(align_cuda, "_C", emulated)
    monkeypatch.setattr(align_cuda, "COST_BUDGET", 3 * 5 * 40)
    _compare(align_cuda.align_forward_cuda, ((7, 33, 2, 40), 4, 5, 3), "hv", 0.1)


@pytest.mark.parametrize("pattern", ["hv", "hvd"])
def test_gradcheck_with_band(pattern):
    x, offsets, mu, theta, _ = make_inputs((3, 1, 6), 2, 4, 2, dtype=torch.float64, seed=3)

    def dist(x, mu, theta):
        return align(x, offsets, mu, theta, pattern, band=0.1, backend="ref")[0]

    args = tuple(t.clone().requires_grad_() for t in (x, mu, theta))
    assert torch.autograd.gradcheck(dist, args, eps=1e-6, atol=1e-6)


@pytest.mark.skipif(not (torch.cuda.is_available() and align_cuda.available()),
                    reason="needs a CUDA device and the built extension "
                           "(pip install --no-build-isolation ./kernel_setup)")
@pytest.mark.parametrize("pattern", ["hv", "hvd"])
def test_gpu_cuda_band_matches_reference(pattern):
    """On the GPU (kernel_setup/gpu_check.sh runs it): the banded forward through align()."""
    check_gpu_forward(pattern, band=0.1)
