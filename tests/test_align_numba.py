"""numba backend vs the pure-PyTorch reference, through the public align()."""
import functools

import numpy as np
import pytest
import torch

from dejavid.alignment import ref as align_ref
from dejavid.alignment.op import align, get_backend

numba = pytest.importorskip("numba")
from dejavid.alignment import numba as align_numba  # noqa: E402  (needs numba)
from dejavid.alignment.backend import packed_row_width  # noqa: E402
from dejavid.data.dataset import collate_packed  # noqa: E402
from parity import (GRID_SHAPES, MODES, SHAPES, TIE_KINDS, TIE_SHAPES,  # noqa: E402
                    check_dba_accumulate, check_local_cost, check_strided_inputs,
                    compare_with_reference, count_path_ties, gradcheck_align, make_inputs,
                    perturbed_paths, run_align, shape_id, tie_fixed_paths, tie_inputs)


# Paths equal to the reference's, values and every gradient close.
_compare = functools.partial(compare_with_reference, "numba")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES + GRID_SHAPES, ids=shape_id)
def test_parity_with_reference(shape, mode):
    _compare(*make_inputs(*shape), mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", TIE_SHAPES, ids=shape_id)
@pytest.mark.parametrize("kind", TIE_KINDS)
def test_parity_on_exact_ties(kind, shape, mode):
    # Exact ties in the accumulated cost (the tie rules pick the path) and zero
    # differences mu - x on the path (sign(0) = 0 in the gradients): paths equal, values
    # and every gradient close.  A '<=' for '<' in the hv or hvd backtracking, or
    # sign(0) = +1 in _run_grads, fails here and nowhere on random normal inputs.
    _compare(*tie_inputs(kind, *shape), mode, fixed_paths=tie_fixed_paths)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", TIE_KINDS)
def test_parity_on_exact_ties_float64(kind, mode):
    _compare(*tie_inputs(kind, *TIE_SHAPES[0], dtype=torch.float64), mode,
             fixed_paths=tie_fixed_paths)


def test_tie_cases_are_full_of_ties():
    """The tie cases above meet both backtracking rules' ties and zero differences on
    their paths, in runs of every length modulo 4 (the gradient kernels' blocks)."""
    ties = {"hv": 0, "hvd": 0}
    zero_runs = set()
    for kind in TIE_KINDS:
        for shape in TIE_SHAPES:
            x, offsets, mu, theta, _ = tie_inputs(kind, *shape)
            for mode in ties:
                ties[mode] += count_path_ties(x, offsets, mu, theta, mode)
            paths = tie_fixed_paths(x, offsets, mu, theta)
            for (b, c, i), (lo, hi) in zip(np.ndindex(*paths.shape[:3]),
                                           paths.view(-1, 2).tolist()):
                rows = x[offsets[b] + lo:offsets[b] + hi + 1]
                if (rows == mu[c, i]).any():
                    zero_runs.add((hi - lo + 1) % 4)
    print(ties, sorted(zero_runs))
    assert ties["hv"] >= 100 and ties["hvd"] >= 100
    assert zero_runs == {0, 1, 2, 3}


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
    xr, _, _, G, rows = align_numba._cost_inputs(x, mu, theta)  # 3 classes: padded copies
    assert G == 3  # 64 // K = 12 classes per group, at most C
    assert xr.shape == (7, 144) and rows.shape == (numba.get_num_threads(), 2, 15, 144)
    xr, _, _, G, rows = align_numba._cost_inputs(x, mu[:2], theta[:2])  # 2: read in place
    assert np.shares_memory(xr, x.numpy()) and rows.shape[3] == 0
    # One pair, so at least one task has nothing to do, still through the copies.
    monkeypatch.setattr(align_numba, "_PAD_MIN_C", 1)
    check_local_cost(align_numba.local_cost_numba, (5,), 130, 3, 1)


@pytest.mark.parametrize("K, C, G", [(64, 51, 1), (8, 51, 8), (5, 51, 12), (1, 51, 51),
                                     (2, 3, 3), (128, 4, 1)])
def test_class_groups_fill_64_rows(K, C, G):
    assert align_numba._group_size(C, K) == G


def _packed(x, offsets):
    """x as collate_packed lays a batch out (rows padded to whole cache lines)."""
    items = [(x[a:b], 0, 0) for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    batch = collate_packed(items)
    assert torch.equal(batch.offsets, offsets) and torch.equal(batch.x, x)
    return batch.x


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("C", [2, 3])  # read in place / through the padded copies
def test_packed_batch_is_read_in_place(mode, C):
    x, offsets, mu, theta, upstream = make_inputs((7, 33, 2, 1), 1459, 8, C)
    xp = _packed(x, offsets)
    assert xp.stride(0) == packed_row_width(1459) == 1472 and xp.data_ptr() % 64 == 0
    full = align_numba._x_rows(xp)
    assert full.shape == (x.shape[0], 1472) and np.shares_memory(full, xp.numpy())
    assert np.shares_memory(align_numba._rows(xp, 1472), xp.numpy())  # no second copy
    fixed = perturbed_paths(x, offsets, mu, theta) if mode == "fixed" else None

    def run(x):  # as in training: x is data (no gradient), passed as it is
        m, t = mu.clone().requires_grad_(), theta.clone().requires_grad_()
        if mode == "fixed":
            dist, paths = align(x, offsets, m, t, paths=fixed, backend="numba")
        else:
            dist, paths = align(x, offsets, m, t, step_pattern=mode, backend="numba")
        dist.backward(upstream)
        return dist.detach(), paths, m.grad, t.grad

    for a, b in zip(run(xp), run(x)):
        assert torch.equal(a, b)
    # With a gradient for x, too (run_align passes a contiguous clone of x).
    gx = align_numba.path_grads_numba(xp, offsets, mu, theta, run(x)[1], upstream, True)[0]
    assert torch.equal(gx, run_align("numba", x, offsets, mu, theta, upstream, mode, fixed)[2])


def test_packed_batch_moves_to_another_device_as_dense_rows():
    x, offsets, *_ = make_inputs((7, 33), 1459, 1, 1)
    items = [(x[a:b], 0, 0) for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    moved = collate_packed(items).to("meta")  # any device other than the batch's
    assert moved.x.device.type == "meta" and moved.x.shape == x.shape
    assert moved.x.stride() == (1472, 1)  # the [N, 1472] rows went whole, then a view
    small = collate_packed([(torch.randn(3, 5), 0, 0)])  # F < 128: plain rows
    assert small.x.is_contiguous() and small.to("meta").x.shape == (3, 5)


def test_packed_batch_rejects_mixed_feature_sizes():
    with pytest.raises(ValueError, match=r"must all be \[T, 130\]"):
        collate_packed([(torch.randn(3, 130), 0, 0), (torch.randn(2, 1), 1, 1)])


def test_padded_rows_with_nonzero_padding_are_copied():
    x, offsets, mu, theta, _ = make_inputs((3, 4), 130, 2, 3)
    full = torch.ones(7, 144)
    full[:, :130] = x
    view = full[:, :130]
    xr = align_numba._rows(view, 144)  # the padding must be zero to be read in place
    assert not np.shares_memory(xr, full.numpy()) and not xr[:, 130:].any()
    # The path kernels read f < F only: any padding will do.
    assert np.shares_memory(align_numba._x_rows(view), full.numpy())
    check_local_cost(lambda *a: align_numba.local_cost_numba(view, *a[1:]), (3, 4), 130, 2, 3)


@pytest.mark.parametrize("mode", ["hv", "fixed"])
def test_tiles_do_not_change_results(mode, monkeypatch):
    # One sample per tile (forward and path kernels) and one centroid row per chunk
    # against the defaults: every pair and every row sums in the same order, so
    # results are bitwise equal.
    x, offsets, mu, theta, upstream = make_inputs((33, 7, 2, 1, 25), 300, 8, 5)
    fixed = perturbed_paths(x, offsets, mu, theta) if mode == "fixed" else None
    base = run_align("numba", x, offsets, mu, theta, upstream, mode, fixed)
    monkeypatch.setattr(align_numba, "_TILE_BYTES", 1)
    monkeypatch.setattr(align_numba, "_CHUNK_BYTES", 1)
    monkeypatch.setattr(align_numba, "_FWD_TILE_BYTES", 1)
    assert align_numba._blocking(x.numpy(), 5, 300, 3)[1:] == (1, 1)
    assert align_numba._sample_tile(x.numpy(), 5) == 1
    tiny = run_align("numba", x, offsets, mu, theta, upstream, mode, fixed)
    for a, b in zip(base, tiny):
        assert torch.equal(a, b)


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


@pytest.mark.parametrize("mode", ["hv", "fixed"])
@pytest.mark.parametrize("K, C", [(16, 5), (8, 51), (64, 3), (1, 2)])
def test_results_are_bitwise_reproducible(K, C, mode):
    # Two identical calls, and calls with 1 and with 2 numba threads (or as many as
    # numba has), give bitwise the same distances, paths and every gradient.
    x, offsets, mu, theta, upstream = make_inputs((33, 7, 150, 2, 33), 300, K, C)
    fixed = perturbed_paths(x, offsets, mu, theta) if mode == "fixed" else None
    runs = []
    saved = numba.get_num_threads()
    two = min(2, numba.config.NUMBA_NUM_THREADS)
    try:
        for threads in (two, two, 1, saved):
            numba.set_num_threads(threads)
            runs.append(run_align("numba", x, offsets, mu, theta, upstream, mode, fixed))
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
