"""The pure-PyTorch reference alignment (dejavid.alignment.ref) against hand-worked
cases, dtw-python, an independent numpy DP and dense autograd formulas.

Conventions (docs/DESIGN.md sections 3-4): rows i of the local cost D are centroid
steps, columns j are sample steps; a path stores, per centroid row i, the
inclusive range [lo_i, hi_i] of matched sample steps.
"""
import itertools
import re

import numpy as np
import pytest
import torch

from dejavid.alignment import ref as align_ref
from dejavid.alignment.op import align, dba_accumulate

PATTERNS = ["hv", "hvd"]


# --------------------------------------------------------------------------- helpers

def _offsets(lengths):
    return torch.tensor([0, *np.cumsum(lengths)], dtype=torch.int64)


def _inputs(lengths, F, K, C, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(lengths), F, generator=g, dtype=dtype)
    mu = torch.randn(C, K, F, generator=g, dtype=dtype)
    theta = 0.5 * torch.randn(C, K, F, generator=g, dtype=dtype)
    return x, _offsets(lengths), mu, theta


def _one_sample(mu_1d, x_1d):
    """F = 1, C = 1, theta = 0 (w = 1): D[i, j] = |mu[i] - x[j]| exactly."""
    mu = torch.tensor(mu_1d, dtype=torch.float64).view(1, -1, 1)
    x = torch.tensor(x_1d, dtype=torch.float64).view(-1, 1)
    return x, _offsets([len(x_1d)]), mu, torch.zeros_like(mu)


def _ranges(path_rows):
    """[[lo, hi], ...] -> int32 tensor [1, 1, K, 2]."""
    return torch.tensor(path_rows, dtype=torch.int32).view(1, 1, -1, 2)


def _align_D(D, pattern):
    """accumulate_ref + backtrack_ref on one hand-built local cost [K, T]."""
    D = torch.as_tensor(D, dtype=torch.float64).view(1, 1, *np.shape(D))
    A = align_ref.accumulate_ref(D, pattern)
    paths = align_ref.backtrack_ref(A, torch.tensor([D.shape[-1]]), pattern)
    return A[0, 0], paths


def _numpy_dp(D, pattern):
    """Independent DTW written straight from docs/DESIGN.md section 3 (out of range = +inf).

    Returns (A [K, T], ranges [K, 2]).
    """
    K, T = D.shape
    inf = np.inf
    A = np.full((K, T), inf)

    def at(i, j):
        return A[i, j] if i >= 0 and j >= 0 else inf

    for i in range(K):
        for j in range(T):
            if i == 0 and j == 0:
                A[0, 0] = D[0, 0]
                continue
            preds = [at(i - 1, j), at(i, j - 1)]
            if pattern == "hvd":
                preds.append(at(i - 1, j - 1))
            A[i, j] = D[i, j] + min(preds)
    i, j = K - 1, T - 1
    cells = [(i, j)]
    while (i, j) != (0, 0):
        a, b, g = at(i - 1, j), at(i, j - 1), at(i - 1, j - 1)
        if pattern == "hv":
            if a < b:
                i -= 1
            else:
                j -= 1
        elif a < b and a < g:
            i -= 1
        elif b < g:
            j -= 1
        else:
            i, j = i - 1, j - 1
        cells.append((i, j))
    return A, _cells_to_ranges(cells, K)


def _cells_to_ranges(cells, K):
    ranges = np.full((K, 2), -1, dtype=np.int64)
    for i, j in cells:
        ranges[i, 0] = j if ranges[i, 0] < 0 else min(ranges[i, 0], j)
        ranges[i, 1] = max(ranges[i, 1], j)
    return ranges


def _dense_mask(paths, lengths):
    """[B, C, K, 2] ranges -> list over b of 0/1 masks [C, K, T_b]."""
    out = []
    for b, T in enumerate(lengths):
        j = torch.arange(T)
        lo = paths[b, ..., 0].long().unsqueeze(-1)
        hi = paths[b, ..., 1].long().unsqueeze(-1)
        out.append(((j >= lo) & (j <= hi)).to(torch.float64))
    return out


def _dense_dist(x, offsets, mu, theta, masks):
    """d[b, c] = sum_{i,j,f} M[c,i,j] w[c,i,f] |mu[c,i,f] - x_b[j,f]| -> [B, C]."""
    w = theta.exp()
    rows = []
    for b, M in enumerate(masks):
        xb = x[offsets[b]:offsets[b + 1]]                                   # [T, F]
        cost = (w.unsqueeze(2) * (mu.unsqueeze(2) - xb).abs()).sum(-1)     # [C, K, T]
        rows.append((M * cost).sum((1, 2)))
    return torch.stack(rows)


def _check_path_shape(paths, lengths, pattern):
    """Contiguous monotone cover of [0, T-1] with the steps the pattern allows."""
    B, C, K, _ = paths.shape
    for b, c in itertools.product(range(B), range(C)):
        p = paths[b, c].long()
        assert p[0, 0] == 0 and p[-1, 1] == lengths[b] - 1
        assert bool((p[:, 0] <= p[:, 1]).all())
        step = p[1:, 0] - p[:-1, 1]
        allowed = (0,) if pattern == "hv" else (0, 1)
        assert set(step.tolist()) <= set(allowed), p


# --------------------------------------------------------------------------- 1. hand-worked

# mu = [0, 10], x = [1, 3, 12]:
#   D = | 1  3 12 |
#       | 9  7  2 |
# hv : A = | 1  4 16 |      back from (1,2): a=A[0,2]=16 > b=A[1,1]=11 -> left
#          |10 11 13 |      (1,1): a=A[0,1]=4 < b=A[1,0]=10 -> up; (0,1): i=0 -> left
#      d = 13, path row0 [0,1], row1 [1,2]
# hvd: A = | 1  4 16 |      A[1,1] = 7 + min(4, 10, 1) = 8, A[1,2] = 2 + min(16, 8, 4) = 6
#          |10  8  6 |      (1,2): a=16, b=8, g=4 -> diag; (0,1): i=0 -> left
#      d = 6, path row0 [0,1], row1 [2,2]
CASE_2x3 = dict(mu=[0.0, 10.0], x=[1.0, 3.0, 12.0],
                hv=(13.0, [[0, 1], [1, 2]]), hvd=(6.0, [[0, 1], [2, 2]]))

# mu = [0, 5, 10], x = [0, 6, 9]:
#   D = |  0  6  9 |
#       |  5  1  4 |
#       | 10  4  1 |
# hv : A = |  0  6 15 |    (2,2): a=A[1,2]=10 == b=A[2,1]=10 -> tie goes left
#          |  5  6 10 |    (2,1): a=6 < b=15 -> up; (1,1): a=6 > b=5 -> left
#          | 15 10 11 |    (1,0): j=0 -> up (border)
#      d = 11, path row0 [0,0], row1 [0,1], row2 [1,2]
# hvd: A[1,1] = 1, A[1,2] = 4 + min(15, 1, 6) = 5, A[2,1] = 4 + min(1, 15, 5) = 5,
#      A[2,2] = 1 + min(5, 5, 1) = 2 -> diagonal twice: d = 0 + 1 + 1 = 2, identity path
CASE_3x3 = dict(mu=[0.0, 5.0, 10.0], x=[0.0, 6.0, 9.0],
                hv=(11.0, [[0, 0], [0, 1], [1, 2]]), hvd=(2.0, [[0, 0], [1, 1], [2, 2]]))


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("case", [CASE_2x3, CASE_3x3], ids=["2x3", "3x3"])
def test_hand_worked(case, pattern):
    x, offsets, mu, theta = _one_sample(case["mu"], case["x"])
    dist, paths = align(x, offsets, mu, theta, step_pattern=pattern, backend="ref")
    want_d, want_path = case[pattern]
    assert dist.shape == (1, 1) and dist.dtype == torch.float64
    assert dist.item() == want_d
    assert paths.dtype == torch.int32
    assert torch.equal(paths, _ranges(want_path))


def test_hand_worked_accumulated_matrix():
    x, offsets, mu, theta = _one_sample(CASE_3x3["mu"], CASE_3x3["x"])
    D = align_ref.local_cost_ref(x, offsets, mu, theta)[0, 0]
    assert torch.equal(D, torch.tensor([[0., 6, 9], [5, 1, 4], [10, 4, 1]], dtype=torch.float64))
    assert torch.equal(align_ref.accumulate_ref(D, "hv"),
                       torch.tensor([[0., 6, 15], [5, 6, 10], [15, 10, 11]], dtype=torch.float64))
    assert torch.equal(align_ref.accumulate_ref(D, "hvd"),
                       torch.tensor([[0., 6, 15], [5, 1, 5], [15, 5, 2]], dtype=torch.float64))


# Tie cases through align (F = 1, w = 1).
#  hv, mu=[0,0], x=[1,1]: D all 1, A = [[1,2],[2,3]]; (1,1): a = b = 2 -> left, then
#      j = 0 -> up.  path row0 [0,0], row1 [0,1] (an "up on tie" rule gives [0,1],[1,1]).
#  hvd, mu=[0,-1], x=[1,0]: D = [[1,0],[2,1]], A = [[1,1],[3,2]]; (1,1): a=1 < b=3 but
#      a == g = 1 -> not up; b < g false -> diagonal.  path identity, d = 2.
#  hvd, mu=[-1,0], x=[0,1]: D = [[1,2],[0,1]], A = [[1,3],[1,2]]; (1,1): b == g = 1 < a
#      -> diagonal, not left.  path identity, d = 2.
#  hvd, mu=x=0 (3x4): every A = 0, all three tie -> diagonal twice then left on row 0.
#  hv,  mu=x=0 (3x4): every up/left tie goes left along row 2, then up the j = 0 border.
TIE_CASES = [
    ("hv", [0.0, 0.0], [1.0, 1.0], 3.0, [[0, 0], [0, 1]]),
    ("hvd", [0.0, -1.0], [1.0, 0.0], 2.0, [[0, 0], [1, 1]]),
    ("hvd", [-1.0, 0.0], [0.0, 1.0], 2.0, [[0, 0], [1, 1]]),
    ("hvd", [0.0, 0.0, 0.0], [0.0] * 4, 0.0, [[0, 1], [2, 2], [3, 3]]),
    ("hv", [0.0, 0.0, 0.0], [0.0] * 4, 0.0, [[0, 0], [0, 0], [0, 3]]),
]


@pytest.mark.parametrize("pattern,mu,x,want_d,want_path", TIE_CASES,
                         ids=["hv-up-left", "hvd-up-diag", "hvd-left-diag", "hvd-all", "hv-all"])
def test_tie_rules_through_align(pattern, mu, x, want_d, want_path):
    x, offsets, mu, theta = _one_sample(mu, x)
    dist, paths = align(x, offsets, mu, theta, step_pattern=pattern, backend="ref")
    assert dist.item() == want_d
    assert torch.equal(paths, _ranges(want_path))


def test_hvd_up_left_tie_goes_left():
    # D = | 0 0 0 |    A = | 0 0 0 |   (2,2): a = A[1,2] = 0 == b = A[2,1] = 0 < g = 5
    #     | 0 5 0 |        | 0 5 0 |   -> left (up loses ties with left);
    #     | 0 0 0 |        | 0 0 0 |   (2,1): a=5, b=0 == g=0 -> diag; (1,0): j=0 -> up
    A, paths = _align_D([[0, 0, 0], [0, 5, 0], [0, 0, 0]], "hvd")
    assert torch.equal(A, torch.tensor([[0., 0, 0], [0, 5, 0], [0, 0, 0]], dtype=torch.float64))
    assert torch.equal(paths, _ranges([[0, 0], [0, 0], [1, 2]]))


def test_hvd_strict_up_and_left_moves():
    # Strict up:  D = | 0 0 |  A = |  0 0 |   (2,1): a=A[1,1]=0 < b=A[2,0]=10 and
    #                 | 5 0 |      |  5 0 |   a < g=A[1,0]=5 -> up; (1,1): a=0 == g=0,
    #                 | 5 0 |      | 10 0 |   b=5 -> diagonal.
    A, paths = _align_D([[0, 0], [5, 0], [5, 0]], "hvd")
    assert torch.equal(A, torch.tensor([[0., 0], [5, 0], [10, 0]], dtype=torch.float64))
    assert torch.equal(paths, _ranges([[0, 0], [1, 1], [1, 1]]))
    # Strict left: D = | 0 5 5 |  A = | 0 5 10 |   (1,2): b=A[1,1]=0 < g=A[0,1]=5,
    #                  | 0 0 0 |      | 0 0  0 |   a=10 -> left; (1,1): b == g = 0 -> diag.
    A, paths = _align_D([[0, 5, 5], [0, 0, 0]], "hvd")
    assert torch.equal(A, torch.tensor([[0., 5, 10], [0, 0, 0]], dtype=torch.float64))
    assert torch.equal(paths, _ranges([[0, 0], [1, 2]]))


def test_hv_border_moves():
    # K = 1: only left moves; T = 1: only up moves.
    x, offsets, mu, theta = _one_sample([2.0], [1.0, 4.0, 0.0])
    dist, paths = align(x, offsets, mu, theta, step_pattern="hv", backend="ref")
    assert dist.item() == 1 + 2 + 2 and torch.equal(paths, _ranges([[0, 2]]))
    x, offsets, mu, theta = _one_sample([1.0, 4.0, 0.0], [2.0])
    for pattern in PATTERNS:
        dist, paths = align(x, offsets, mu, theta, step_pattern=pattern, backend="ref")
        assert dist.item() == 5.0 and torch.equal(paths, _ranges([[0, 0]] * 3))


# --------------------------------------------------------------------------- 2. K == T diagonal

@pytest.mark.parametrize("K", [1, 2, 5, 9])
def test_diagonal_optimum_is_sum_of_diagonal(K):
    # Centroid steps far apart, sample j close to centroid step j: off-diagonal cells cost
    # >= 10 each while the whole diagonal costs < 1, so 'hvd' goes straight down it.
    g = torch.Generator().manual_seed(K)
    F, C = 3, 2
    mu = 100.0 * torch.arange(K, dtype=torch.float64).view(1, K, 1).expand(C, K, F).clone()
    mu += torch.rand(C, K, F, generator=g, dtype=torch.float64)
    x = 100.0 * torch.arange(K, dtype=torch.float64).view(K, 1).expand(K, F).clone()
    x += torch.rand(K, F, generator=g, dtype=torch.float64)
    theta = 0.1 * torch.randn(C, K, F, generator=g, dtype=torch.float64)
    dist, paths = align(x, _offsets([K]), mu, theta, step_pattern="hvd", backend="ref")
    want = (theta.exp() * (mu - x.unsqueeze(0)).abs()).sum((1, 2))   # [C]
    assert torch.allclose(dist[0], want, rtol=1e-12, atol=0)
    ident = torch.arange(K, dtype=torch.int32).view(K, 1).expand(K, 2)
    assert torch.equal(paths, ident.expand(1, C, K, 2))


# --------------------------------------------------------------------------- 3. oracles

def _dtw_python_pattern(pattern):
    dtw = pytest.importorskip("dtw")
    if pattern == "hvd":
        return dtw.stepPattern.symmetric1
    # Rows: (pattern id, delta i, delta j, weight); weight -1 marks the step origin.
    return dtw.StepPattern(np.array([[1, 1, 0, -1], [1, 0, 0, 1],
                                     [2, 0, 1, -1], [2, 0, 0, 1]], dtype=float))


ORACLE_SHAPES = list(itertools.product([1, 5, 9], [1, 2, 7, 13]))


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("K,T", ORACLE_SHAPES)
def test_matches_dtw_python(K, T, pattern):
    dtw = pytest.importorskip("dtw")
    step = _dtw_python_pattern(pattern)
    x, offsets, mu, theta = _inputs([T], F=4, K=K, C=3, seed=100 * K + T)
    dist, paths = align(x, offsets, mu, theta, step_pattern=pattern, backend="ref")
    D = align_ref.local_cost_ref(x, offsets, mu, theta)           # [1, C, K, T]
    for c in range(mu.shape[0]):
        Dc = D[0, c].numpy()
        res = dtw.dtw(Dc, step_pattern=step, keep_internals=True)
        assert np.isclose(dist[0, c].item(), res.distance, rtol=1e-12, atol=0), (
            dist[0, c].item(), res.distance)
        want = _cells_to_ranges(zip(res.index1.tolist(), res.index2.tolist()), K)
        assert np.array_equal(paths[0, c].numpy(), want), (paths[0, c], want)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("K,T", ORACLE_SHAPES)
def test_matches_numpy_dp_random(K, T, pattern):
    x, offsets, mu, theta = _inputs([T], F=2, K=K, C=2, seed=7 * K + T)
    dist, paths = align(x, offsets, mu, theta, step_pattern=pattern, backend="ref")
    D = align_ref.local_cost_ref(x, offsets, mu, theta)
    for c in range(2):
        A, ranges = _numpy_dp(D[0, c].numpy(), pattern)
        assert np.isclose(dist[0, c].item(), A[-1, -1], rtol=1e-12, atol=0)
        assert np.array_equal(paths[0, c].numpy(), ranges)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_matches_numpy_dp_with_many_ties(pattern):
    # Small integer costs: lots of exactly tied predecessors, so every tie rule is hit.
    rng = np.random.default_rng(3)
    for K, T in itertools.product([1, 2, 3, 6], [1, 2, 4, 7]):
        for _ in range(6):
            D = rng.integers(0, 3, size=(K, T)).astype(float)
            A, paths = _align_D(D, pattern)
            want_A, want_ranges = _numpy_dp(D, pattern)
            assert np.array_equal(A.numpy(), want_A)
            assert np.array_equal(paths[0, 0].numpy(), want_ranges), (D, paths[0, 0], want_ranges)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_path_structure(pattern):
    lengths = [1, 2, 7, 13, 3]
    x, offsets, mu, theta = _inputs(lengths, F=3, K=5, C=4, seed=11)
    _, paths = align(x, offsets, mu, theta, step_pattern=pattern, backend="ref")
    assert paths.shape == (5, 4, 5, 2)
    _check_path_shape(paths, lengths, pattern)


# --------------------------------------------------------------------------- 4. gradcheck

@pytest.mark.parametrize("mode", ["hv", "hvd", "fixed"])
def test_gradcheck(mode):
    lengths = [3, 1, 4]
    x, offsets, mu, theta = _inputs(lengths, F=2, K=3, C=2, seed=5)
    fixed = None
    if mode == "fixed":
        snap = mu + 0.7 * torch.randn(mu.shape, generator=torch.Generator().manual_seed(9),
                                      dtype=mu.dtype)
        fixed = align_ref.align_forward_ref(x, offsets, snap, theta, "hv")[1]

    def f(x, mu, theta):
        if fixed is None:
            return align(x, offsets, mu, theta, step_pattern=mode, backend="ref")[0]
        return align(x, offsets, mu, theta, paths=fixed, backend="ref")[0]

    inputs = tuple(t.clone().requires_grad_() for t in (x, mu, theta))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("mode", ["hv", "hvd", "fixed"])
def test_align_backward_signed_upstream(mode):
    # Upstream gradient with mixed signs, through the autograd.Function, against dense
    # autograd (gradcheck alone only probes one-hot upstream vectors).
    lengths = [5, 1, 3]
    x, offsets, mu, theta = _inputs(lengths, F=3, K=4, C=3, seed=13)
    up = torch.tensor([[1.0, -2.0, 0.5], [-0.25, 3.0, -1.0], [2.0, 0.0, -4.0]],
                      dtype=torch.float64)
    fixed = None
    if mode == "fixed":
        snap = mu + torch.randn(mu.shape, generator=torch.Generator().manual_seed(3),
                                dtype=mu.dtype)
        fixed = align_ref.align_forward_ref(x, offsets, snap, theta, "hvd")[1]
    xs, ms, ts = (t.clone().requires_grad_() for t in (x, mu, theta))
    if fixed is None:
        dist, paths = align(xs, offsets, ms, ts, step_pattern=mode, backend="ref")
    else:
        dist, paths = align(xs, offsets, ms, ts, paths=fixed, backend="ref")
        paths = fixed
    dist.backward(up)
    xd, md, td = (t.clone().requires_grad_() for t in (x, mu, theta))
    dense = _dense_dist(xd, offsets, md, td, _dense_mask(paths, lengths))
    assert torch.allclose(dist.detach(), dense.detach(), rtol=1e-12, atol=0)
    (up * dense).sum().backward()
    for got, want in ((xs.grad, xd.grad), (ms.grad, md.grad), (ts.grad, td.grad)):
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)


def test_gradient_of_single_input():
    # Only theta requires grad: the others' gradients must not be required nor break it.
    x, offsets, mu, theta = _inputs([2, 5], F=2, K=3, C=2, seed=6)
    th = theta.clone().requires_grad_()
    dist, paths = align(x, offsets, mu, th, step_pattern="hvd", backend="ref")
    dist.sum().backward()
    masks = _dense_mask(paths, [2, 5])
    th2 = theta.clone().requires_grad_()
    _dense_dist(x, offsets, mu, th2, masks).sum().backward()
    assert torch.allclose(th.grad, th2.grad, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- 5. fixed paths

@pytest.mark.parametrize("pattern", PATTERNS)
def test_fixed_path_fresh_snapshot_equals_free(pattern):
    lengths = [7, 1, 13, 2]
    x, offsets, mu, theta = _inputs(lengths, F=3, K=5, C=3, seed=21)
    up = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    res = []
    for fixed in (False, True):
        xs, ms, ts = (t.clone().requires_grad_() for t in (x, mu, theta))
        if fixed:
            snap_paths = align_ref.align_forward_ref(x, offsets, mu.clone(), theta.clone(), pattern)[1]
            dist, paths = align(xs, offsets, ms, ts, paths=snap_paths, backend="ref")
            assert paths is not None and torch.equal(paths, snap_paths)
        else:
            dist, paths = align(xs, offsets, ms, ts, step_pattern=pattern, backend="ref")
        dist.backward(up)
        res.append((dist.detach(), xs.grad, ms.grad, ts.grad))
    for a, b in zip(*res):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_fixed_path_stale_snapshot(pattern):
    lengths = [7, 13, 5]
    x, offsets, mu, theta = _inputs(lengths, F=3, K=5, C=3, seed=22)
    g = torch.Generator().manual_seed(4)
    snap_mu = mu + torch.randn(mu.shape, generator=g, dtype=mu.dtype)
    snap_theta = theta + 0.5 * torch.randn(mu.shape, generator=g, dtype=mu.dtype)
    stale = align_ref.align_forward_ref(x, offsets, snap_mu, snap_theta, pattern)[1]
    free_d, free_p = align(x, offsets, mu, theta, step_pattern=pattern, backend="ref")
    assert not torch.equal(stale, free_p), "snapshot too close: test would be vacuous"
    fixed_d, _ = align(x, offsets, mu, theta, paths=stale, backend="ref")
    assert torch.allclose(fixed_d, align_ref.path_cost_ref(x, offsets, mu, theta, stale),
                          rtol=1e-12, atol=0)
    assert torch.allclose(fixed_d, _dense_dist(x, offsets, mu, theta, _dense_mask(stale, lengths)),
                          rtol=1e-12, atol=0)
    assert bool((fixed_d >= free_d - 1e-12).all())
    differs = (stale != free_p).flatten(2).any(-1)          # [B, C]
    assert bool((fixed_d[differs] > free_d[differs]).all())


# --------------------------------------------------------------------------- 6. batching

@pytest.mark.parametrize("pattern", PATTERNS)
def test_batch_equals_per_sample(pattern):
    base = [1, 13, 2, 7, 1, 4]
    g = torch.Generator().manual_seed(8)
    F, K, C = 3, 5, 3
    samples = [torch.randn(T, F, generator=g, dtype=torch.float64) for T in base]
    mu = torch.randn(C, K, F, generator=g, dtype=torch.float64)
    theta = 0.5 * torch.randn(C, K, F, generator=g, dtype=torch.float64)
    single = [align(s, _offsets([len(s)]), mu, theta, step_pattern=pattern, backend="ref")
              for s in samples]
    orders = [list(range(6)), list(range(6))[::-1], sorted(range(6), key=lambda k: base[k]),
              [3, 0, 5, 1, 4, 2]]
    for order in orders:
        x = torch.cat([samples[k] for k in order])
        dist, paths = align(x, _offsets([base[k] for k in order]), mu, theta,
                            step_pattern=pattern, backend="ref")
        for row, k in enumerate(order):
            assert torch.allclose(dist[row], single[k][0][0], rtol=1e-13, atol=0)
            assert torch.equal(paths[row], single[k][1][0])


def test_padding_values_do_not_leak():
    # Same short sample next to a long one whose values are huge: the short sample's
    # padded region (zeros in local_cost_ref) must never reach its distance or path.
    F, K, C = 2, 4, 2
    x, _, mu, theta = _inputs([3], F=F, K=K, C=C, seed=31)
    big = 1e6 * torch.ones(20, F, dtype=torch.float64)
    for pattern in PATTERNS:
        d1, p1 = align(x, _offsets([3]), mu, theta, step_pattern=pattern, backend="ref")
        d2, p2 = align(torch.cat([x, big]), _offsets([3, 20]), mu, theta,
                       step_pattern=pattern, backend="ref")
        assert torch.equal(d2[0], d1[0]) and torch.equal(p2[0], p1[0])
        assert bool((d2[1] > 1e6).all())


def test_non_contiguous_inputs():
    x, offsets, mu, theta = _inputs([5, 2], F=3, K=4, C=2, seed=41)
    xt = x.t().contiguous().t()
    mut = mu.transpose(0, 2).contiguous().transpose(0, 2)
    tht = theta.transpose(0, 2).contiguous().transpose(0, 2)
    assert not xt.is_contiguous() and not mut.is_contiguous()
    for pattern in PATTERNS:
        d1, p1 = align(x, offsets, mu, theta, step_pattern=pattern, backend="ref")
        d2, p2 = align(xt, offsets, mut, tht, step_pattern=pattern, backend="ref")
        assert torch.equal(d1, d2) and torch.equal(p1, p2)


# --------------------------------------------------------------------------- 7. path cost / grads

@pytest.mark.parametrize("pattern", PATTERNS)
def test_path_cost_along_returned_path(pattern):
    lengths = [1, 9, 4]
    x, offsets, mu, theta = _inputs(lengths, F=3, K=6, C=3, seed=51)
    dist, paths = align_ref.align_forward_ref(x, offsets, mu, theta, pattern)
    cost = align_ref.path_cost_ref(x, offsets, mu, theta, paths)
    assert torch.allclose(cost, dist, rtol=1e-12, atol=0)
    dense = _dense_dist(x, offsets, mu, theta, _dense_mask(paths, lengths))
    assert torch.allclose(dense, dist, rtol=1e-12, atol=0)


@pytest.mark.parametrize("need_x", [True, False])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_path_grads_equal_dense_autograd(pattern, need_x):
    lengths = [4, 1, 7]
    x, offsets, mu, theta = _inputs(lengths, F=3, K=5, C=3, seed=61)
    # Exact ties mu == x on a few entries: the gradient there uses sign(0) = 0.
    x[0, 0] = mu[0, 0, 0]
    x[4, :] = mu[1, 2, :]
    x[5, 1] = mu[2, 4, 1]
    _, paths = align_ref.align_forward_ref(x, offsets, mu, theta, pattern)
    grad = torch.randn(3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    gx, gmu, gth = align_ref.path_grads_ref(x, offsets, mu, theta, paths, grad, need_x)

    xs, ms, ts = (t.clone().requires_grad_() for t in (x, mu, theta))
    (grad * _dense_dist(xs, offsets, ms, ts, _dense_mask(paths, lengths))).sum().backward()
    assert torch.allclose(gmu, ms.grad, rtol=1e-12, atol=1e-12)
    assert torch.allclose(gth, ts.grad, rtol=1e-12, atol=1e-12)
    if need_x:
        assert torch.allclose(gx, xs.grad, rtol=1e-12, atol=1e-12)
    else:
        assert gx is None


def test_path_grads_match_design_formulas():
    # Literal docs/DESIGN.md section 4 loops on one tiny case with hand-picked paths.
    lengths = [3, 2]
    x, offsets, mu, theta = _inputs(lengths, F=2, K=2, C=2, seed=71)
    paths = torch.tensor([[[[0, 1], [1, 2]], [[0, 0], [1, 2]]],
                          [[[0, 0], [1, 1]], [[0, 1], [1, 1]]]], dtype=torch.int32)
    grad = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    gx, gmu, gth = align_ref.path_grads_ref(x, offsets, mu, theta, paths, grad, True)
    w = theta.exp()
    wx, wmu, wth = torch.zeros_like(x), torch.zeros_like(mu), torch.zeros_like(theta)
    for b, c, i in itertools.product(range(2), range(2), range(2)):
        for j in range(int(paths[b, c, i, 0]), int(paths[b, c, i, 1]) + 1):
            xr = x[offsets[b] + j]
            wth[c, i] += grad[b, c] * w[c, i] * (mu[c, i] - xr).abs()
            wmu[c, i] += grad[b, c] * w[c, i] * torch.sign(mu[c, i] - xr)
            wx[offsets[b] + j] += grad[b, c] * w[c, i] * torch.sign(xr - mu[c, i])
    assert torch.allclose(gth, wth, rtol=1e-13, atol=1e-13)
    assert torch.allclose(gmu, wmu, rtol=1e-13, atol=1e-13)
    assert torch.allclose(gx, wx, rtol=1e-13, atol=1e-13)


# --------------------------------------------------------------------------- 8. DBA

@pytest.mark.parametrize("pattern", PATTERNS)
def test_dba_accumulate_equals_loop(pattern):
    lengths = [1, 6, 9, 3]
    x, offsets, mu, theta = _inputs(lengths, F=3, K=5, C=1, seed=81)
    _, paths = align_ref.align_forward_ref(x, offsets, mu, torch.zeros_like(mu), pattern)
    sums, counts = align_ref.dba_accumulate_ref(x, offsets, paths)
    want_s = torch.zeros(5, 3, dtype=torch.float64)
    want_c = torch.zeros(5, dtype=torch.float64)
    for b in range(len(lengths)):
        for i in range(5):
            for j in range(int(paths[b, 0, i, 0]), int(paths[b, 0, i, 1]) + 1):
                want_s[i] += x[offsets[b] + j]
                want_c[i] += 1
    assert torch.allclose(sums, want_s, rtol=1e-13, atol=1e-13)
    assert torch.equal(counts, want_c)
    assert counts.sum().item() == sum(
        int((paths[b, 0, :, 1] - paths[b, 0, :, 0] + 1).sum()) for b in range(len(lengths)))
    s2, c2 = dba_accumulate(x, offsets, paths, backend="ref")
    assert torch.equal(s2, sums) and torch.equal(c2, counts)


def test_dba_accumulate_hand_case():
    x = torch.tensor([[1.0], [2.0], [4.0], [8.0], [16.0]], dtype=torch.float64)
    offsets = _offsets([3, 2])
    paths = torch.tensor([[[[0, 1], [1, 2]]], [[[0, 0], [1, 1]]]], dtype=torch.int32)
    sums, counts = align_ref.dba_accumulate_ref(x, offsets, paths)
    # row 0: 1 + 2 (b0) + 8 (b1); row 1: 2 + 4 (b0) + 16 (b1)
    assert torch.equal(sums, torch.tensor([[11.0], [22.0]], dtype=torch.float64))
    assert torch.equal(counts, torch.tensor([3.0, 3.0], dtype=torch.float64))


# --------------------------------------------------------------------------- 9. validation

def _ok():
    return _inputs([3, 2], F=2, K=4, C=3, seed=0)


def _bad(name):
    x, offsets, mu, theta = _ok()
    kw = {}
    if name == "x_rank":
        x = x.unsqueeze(0)
    elif name == "mu_rank":
        mu, theta = mu[0], theta[0]
    elif name == "theta_shape":
        theta = theta[:, :-1]
    elif name == "feature_size":
        x = torch.cat([x, x[:, :1]], 1)
    elif name == "dtype_mix":
        x = x.float()
    elif name == "int_dtype":
        x, mu, theta = x.long(), mu.long(), theta.long()
    elif name == "offsets_rank":
        offsets = offsets.view(1, -1)
    elif name == "offsets_short":
        offsets = offsets[:1]
    elif name == "offsets_start":
        offsets = torch.tensor([1, 3, 5])
    elif name == "offsets_end":
        offsets = torch.tensor([0, 3, 4])
    elif name == "offsets_empty_sample":
        offsets = torch.tensor([0, 3, 3, 5])
    elif name == "offsets_decreasing":
        offsets = torch.tensor([0, 4, 3, 5])
    elif name == "paths_shape":
        kw["paths"] = torch.zeros(2, 3, 3, 2, dtype=torch.int32)
    elif name == "paths_dtype":
        kw["paths"] = torch.zeros(2, 3, 4, 2, dtype=torch.int64)
    elif name == "step_pattern":
        kw["step_pattern"] = "d"
    elif name == "backend":
        kw["backend"] = "gpu"
    elif name == "backend_device":
        kw["backend"] = "cuda"
    return (x, offsets, mu, theta), kw


BAD = [
    ("x_rank", re.escape("x must be [N, F]")),
    ("mu_rank", re.escape("mu and theta must both be [C, K, F]")),
    ("theta_shape", re.escape("mu and theta must both be [C, K, F]; got (3, 4, 2) and (3, 3, 2)")),
    ("feature_size", "feature size of x"),
    ("dtype_mix", "share one float dtype"),
    ("int_dtype", "share one float dtype"),
    ("offsets_rank", "offsets must be an int64 vector"),
    ("offsets_short", "offsets must be an int64 vector"),
    ("offsets_start", "offsets must start at 0"),
    ("offsets_end", "end at x.shape"),
    ("offsets_empty_sample", "length >= 1"),
    ("offsets_decreasing", "length >= 1"),
    ("paths_shape", r"paths must be int32 \[B, C, K, 2\]"),
    ("paths_dtype", r"paths must be int32"),
    ("step_pattern", "step_pattern must be one of"),
    ("backend", "backend must be one of"),
    ("backend_device", "runs on cuda tensors"),
]


@pytest.mark.parametrize("name,match", BAD, ids=[b[0] for b in BAD])
def test_input_validation(name, match):
    args, kw = _bad(name)
    kw.setdefault("backend", "ref")
    with pytest.raises(ValueError, match=match):
        align(*args, **kw)


def test_valid_inputs_pass_validation():
    # The baseline of the validation cases is itself valid (so each failure above is
    # caused by its single change), and int32 offsets are accepted and converted.
    x, offsets, mu, theta = _ok()
    d1, _ = align(x, offsets, mu, theta, backend="ref")
    d2, _ = align(x, offsets.int(), mu, theta, backend="ref")
    assert d1.shape == (2, 3) and torch.equal(d1, d2)


def test_accumulate_rejects_unknown_pattern():
    with pytest.raises(ValueError, match="step_pattern must be one of"):
        align_ref.accumulate_ref(torch.zeros(1, 1, 2, 2), "hvx")
