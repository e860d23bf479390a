"""The numba forward in lanes (many prototypes of few features, ``_forward_lanes``):
against the reference through the public align() (values, paths, every gradient, ties,
bands), and against the scalar forward ``_forward_all`` on the same inputs."""
import numpy as np
import pytest
import torch

from dejavid.alignment import ref as align_ref
from dejavid.alignment.backend import band_rows

numba = pytest.importorskip("numba")
from dejavid.alignment import numba as align_numba  # noqa: E402  (needs numba)
from parity import (MODES, RTOL, TIE_KINDS, assert_close, compare_with_reference,  # noqa: E402
                    make_inputs, non_contiguous, perturbed_paths, run_align, shape_id,
                    tie_fixed_paths, tie_inputs)

# (lengths, F, K, C): every one is taken by the lanes (asserted below); C = 16 fills one
# block, 31 leaves one lane empty, 51 thirteen of 64; F from 1 to the limit 8; K = 1 and
# T = 1 included; T from 1 to 40 (every count of sample steps modulo 4, the local
# cost's blocks).
LANE_SHAPES = [((1, 2, 7, 33), 1, 5, 16), ((33, 1, 40, 2), 2, 9, 31),
               ((2, 7, 13), 4, 12, 51), ((5, 1, 3), 3, 1, 16), ((1,), 1, 6, 24),
               ((9, 30, 4, 17), 1, 16, 45), ((6, 3, 8, 21), 8, 7, 28),
               ((11, 4, 2), 6, 10, 40)]


def test_lane_rule():
    use = align_numba._use_lanes
    assert use(16, 1) and use(200, 1) and use(51, 4) and use(31, 2) and use(24, 1)
    assert use(200, 8) and use(16, 6)
    assert not use(15, 1)           # fewer prototypes than lanes
    assert not use(20, 1)           # 12 of 32 lanes empty
    assert not use(200, 9)          # too many features: the scalar kernel reuses x rows
    assert use(200, 1, 128, 8192) and not use(200, 1, 128, 8193)   # a thread's grid <= 64 MB
    assert not use(200, 1, 128, 4097, itemsize=8)
    for shape in LANE_SHAPES:
        assert use(shape[3], shape[1]), shape


def _compare(x, offsets, mu, theta, upstream, mode, fixed_paths=perturbed_paths):
    assert align_numba._use_lanes(mu.shape[0], mu.shape[2])
    compare_with_reference("numba", x, offsets, mu, theta, upstream, mode, fixed_paths)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", LANE_SHAPES, ids=shape_id)
def test_lanes_match_reference(shape, mode):
    _compare(*make_inputs(*shape), mode)


@pytest.mark.parametrize("mode", ["hv", "hvd"])
@pytest.mark.parametrize("kind", TIE_KINDS)
def test_lanes_on_exact_ties(kind, mode):
    # exact ties in the accumulated costs: the lanes' paths follow the tie rules too
    _compare(*tie_inputs(kind, (1, 2, 7, 20, 5), 2, 6, 29), mode, fixed_paths=tie_fixed_paths)


@pytest.mark.parametrize("mode", MODES)
def test_lanes_float64(mode):
    _compare(*make_inputs((5, 33, 1), 3, 6, 29, dtype=torch.float64), mode)


@pytest.mark.parametrize("pattern", ["hv", "hvd"])
@pytest.mark.parametrize("band", [0.05, 0.25])
@pytest.mark.parametrize("shape", LANE_SHAPES, ids=shape_id)
def test_lanes_band_match_reference(shape, pattern, band):
    x, offsets, mu, theta, _ = make_inputs(*shape)
    rows = band_rows(offsets[1:] - offsets[:-1], mu.shape[1], band)
    d_ref, p_ref = align_ref.align_forward_ref(x, offsets, mu, theta, pattern, rows)
    d, p = align_numba.align_forward_numba(x, offsets, mu, theta, pattern, rows, lanes=True)
    assert torch.equal(p, p_ref), "paths differ"
    assert_close("dist", d, d_ref, RTOL[torch.float32])


@pytest.mark.parametrize("band", [None, 0.1])
@pytest.mark.parametrize("pattern", ["hv", "hvd"])
@pytest.mark.parametrize("shape", LANE_SHAPES + [((3, 11, 2), 7, 4, 5)], ids=shape_id)
def test_lanes_equal_scalar_forward(shape, pattern, band):
    # The same paths as _forward_all on any shape, forced either way; with one feature
    # every sum is the same sum, so the distances are bitwise the same.
    x, offsets, mu, theta, _ = make_inputs(*shape, seed=3)
    rows = band_rows(offsets[1:] - offsets[:-1], mu.shape[1], band)
    d0, p0 = align_numba.align_forward_numba(x, offsets, mu, theta, pattern, rows, lanes=False)
    d1, p1 = align_numba.align_forward_numba(x, offsets, mu, theta, pattern, rows, lanes=True)
    assert torch.equal(p0, p1)
    if shape[1] == 1:
        assert torch.equal(d0, d1)
    else:
        assert_close("dist", d1, d0, RTOL[torch.float32])


def test_lanes_do_not_depend_on_thread_count():
    x, offsets, mu, theta, _ = make_inputs((4, 17, 9, 1, 30), 2, 7, 37, seed=5)
    rows = band_rows(offsets[1:] - offsets[:-1], 7, 0.2)
    before = numba.get_num_threads()
    runs = []
    try:
        for n in sorted({1, before}):
            numba.set_num_threads(n)
            runs.append(align_numba.align_forward_numba(x, offsets, mu, theta, "hvd", rows))
    finally:
        numba.set_num_threads(before)
    for d, p in runs[1:]:
        assert torch.equal(d, runs[0][0]) and torch.equal(p, runs[0][1])


def test_lane_blocks_layout():
    t = torch.arange(20 * 3 * 2, dtype=torch.float32).view(20, 3, 2)
    blocks = align_numba._lane_blocks(t)
    assert blocks.shape == (2, 3, 2, 16)
    for c in range(20):
        assert np.array_equal(blocks[c // 16, :, :, c % 16], t[c].numpy())
    assert not blocks[1, :, :, 4:].any()   # empty lanes hold zeros


@pytest.mark.parametrize("mode", ["hv", "hvd"])
def test_lanes_take_strided_inputs(mode):
    # transposed x, permuted mu, strided theta: bitwise what the contiguous inputs give
    x, offsets, mu, theta, up = make_inputs((7, 33, 2, 11), 3, 6, 30, seed=7)
    assert align_numba._use_lanes(30, 3)
    x_nc, mu_nc, theta_nc, up_nc = non_contiguous(x, mu, theta, up)
    strided = run_align("numba", x_nc, offsets, mu_nc, theta_nc, up_nc, mode)
    plain = run_align("numba", x, offsets, mu, theta, up, mode)
    for a, b in zip(strided, plain):
        assert torch.equal(a, b)
