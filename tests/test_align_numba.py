"""numba backend vs the pure-PyTorch reference, through the public align()."""
import functools

import numpy as np
import pytest
import torch

from dejavid import align_ref
from dejavid.alignment import align, get_backend

numba = pytest.importorskip("numba")
from dejavid import align_numba  # noqa: E402  (needs numba)
from parity import (MODES, RTOL, SHAPES, assert_close, check_dba_accumulate,  # noqa: E402
                    check_local_cost, check_strided_inputs, make_inputs, gradcheck_align,
                    perturbed_paths, run_align)


def _compare(x, offsets, mu, theta, upstream, mode):
    fixed = perturbed_paths(x, offsets, mu, theta) if mode == "fixed" else None
    ref = run_align("ref", x, offsets, mu, theta, upstream, mode, fixed)
    fast = run_align("numba", x, offsets, mu, theta, upstream, mode, fixed)
    rtol = RTOL[x.dtype]
    assert fast[1].dtype == torch.int32 and fast[1].shape == ref[1].shape
    assert torch.equal(fast[1], ref[1]), "paths differ"
    assert fast[0].dtype == x.dtype
    for name, a, b in zip(("dist", "grad_x", "grad_mu", "grad_theta"),
                          (fast[0], *fast[2:]), (ref[0], *ref[2:])):
        assert_close(name, a, b, rtol)
    return fast


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"T{'-'.join(map(str, s[0]))}_F{s[1]}_K{s[2]}_C{s[3]}")
def test_parity_with_reference(shape, mode):
    _compare(*make_inputs(*shape), mode)


@pytest.mark.parametrize("mode", MODES)
def test_parity_float64(mode):
    _compare(*make_inputs((5, 33, 1), 17, 6, 3, dtype=torch.float64), mode)


@pytest.mark.parametrize("mode", MODES)
def test_non_contiguous_inputs(mode):
    check_strided_inputs(_compare, functools.partial(run_align, "numba"), mode)


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_float64(mode):
    assert gradcheck_align("numba", mode)


def test_local_cost_matches_reference():
    # Every way the micro-kernel covers T: blocks of 4 only (4, 8), of 4 and 3 (7, 13,
    # 33, 34, 35), of 3 only (3, 6, 9) and the columns left over (1, 2, 5).
    check_local_cost(align_numba.local_cost_numba, (7, 1, 33, 2, 3, 4, 5, 6, 8, 9, 13, 34, 35),
                     1459, 5, 2)


def test_rows_padded_to_whole_cache_lines():
    # The local-cost kernels run on rows rounded up to 16 float32 (one 64-byte line)
    # once F >= 128, zero beyond F, on a 64-byte aligned base.
    widths = [align_numba._row_width(F) for F in (1, 3, 127, 128, 130, 1459, 1808)]
    assert widths == [1, 3, 127, 128, 144, 1472, 1808]
    x = torch.randn(2, 5, 130).transpose(0, 1)
    xr = align_numba._rows(x, 144)
    assert xr.shape == (5, 2, 144) and xr.ctypes.data % 64 == 0
    assert np.array_equal(xr[..., :130], x.numpy()) and not xr[..., 130:].any()
    x = torch.randn(1 + 5 * 144)[1:].view(5, 144)  # contiguous, 4 bytes off a line
    xr = align_numba._rows(x, 144)
    assert xr.ctypes.data % 64 == 0 and np.array_equal(xr, x.numpy())
    y = torch.randn(5, 144)
    assert np.shares_memory(align_numba._rows(y, 144), y.numpy())  # aligned: no copy


@pytest.mark.parametrize("mode", ["hv", "hvd"])
def test_padded_rows_on_misaligned_views(mode):
    # F = 130 runs on 144-column rows; x starts 4 bytes into its storage, mu is strided.
    x, offsets, mu, theta, upstream = make_inputs((7, 33, 2, 1), 130, 5, 3)
    x_off = torch.cat([torch.zeros(1), x.flatten()])[1:].view_as(x)
    mu_nc = mu.transpose(0, 1).contiguous().transpose(0, 1)
    fast = _compare(x_off, offsets, mu_nc, theta, upstream, mode)
    plain = run_align("numba", x, offsets, mu, theta, upstream, mode, None)
    for a, b in zip(fast, plain):
        assert torch.equal(a, b)
    check_local_cost(align_numba.local_cost_numba, (7, 33, 2, 1), 130, 5, 3)


def test_cost_inputs_copy_only_for_enough_classes(monkeypatch):
    x, offsets, mu, theta, _ = make_inputs((4, 3), 130, 5, 3)
    xr, _, _, rows = align_numba._cost_inputs(x, mu, theta)  # 3 classes: padded copies
    assert xr.shape == (7, 144) and rows.shape == (numba.get_num_threads(), 2, 5, 144)
    xr, _, _, rows = align_numba._cost_inputs(x, mu[:2], theta[:2])  # 2: read in place
    assert np.shares_memory(xr, x.numpy()) and rows.shape[3] == 0
    # One pair, so at least one task has nothing to do, still through the copies.
    monkeypatch.setattr(align_numba, "_PAD_MIN_C", 1)
    check_local_cost(align_numba.local_cost_numba, (5,), 130, 3, 1)


def test_hvd_distance_matches_dtw_python():
    dtw = pytest.importorskip("dtw")
    x, offsets, mu, theta, _ = make_inputs((9, 4), 5, 6, 2, dtype=torch.float64)
    dist, _ = align(x, offsets, mu, theta, step_pattern="hvd", backend="numba")
    D = align_ref.local_cost_ref(x, offsets, mu, theta)
    for b, T in enumerate((9, 4)):
        for c in range(2):
            want = dtw.dtw(D[b, c, :, :T].numpy(), step_pattern=dtw.symmetric1).distance
            assert abs(dist[b, c].item() - want) < 1e-9


@pytest.mark.parametrize("lengths", [(1,), (7, 150, 2, 33)])
def test_dba_accumulate_parity(lengths):
    check_dba_accumulate("numba", lengths)


def test_backward_is_deterministic():
    x, offsets, mu, theta, upstream = make_inputs((33, 7, 150, 2, 33), 300, 16, 5)
    runs = []
    saved = numba.get_num_threads()
    try:
        for threads in (saved, 1, saved):
            numba.set_num_threads(threads)
            runs.append(run_align("numba", x, offsets, mu, theta, upstream, "hv"))
    finally:
        numba.set_num_threads(saved)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert torch.equal(a, b)


def test_invalid_fixed_paths_rejected():
    x, offsets, mu, theta, _ = make_inputs((3, 2), 4, 2, 1)
    paths = torch.zeros(2, 1, 2, 2, dtype=torch.int32)
    paths[1, 0, 1] = torch.tensor([0, 2])  # hi == T_b
    with pytest.raises(ValueError, match="paths"):
        align(x, offsets, mu, theta, paths=paths, backend="numba")


def test_cpu_dispatch_picks_numba():
    assert align_numba.available()
    assert get_backend("cpu").name == "numba"
    assert get_backend(torch.device("cpu"), "numba") is align_numba.BACKEND
