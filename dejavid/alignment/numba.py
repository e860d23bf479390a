"""Fused numba CPU kernels for the DejaVid alignment (DESIGN.md sections 3-4).

Same four functions, signatures, dtypes and tie rules as :mod:`dejavid.alignment.ref`:

    x        [N, F]   all samples of a batch concatenated along time
    offsets  [B + 1]  int64
    mu/theta [C, K, F]
    paths    [B, C, K, 2] int32, inclusive (lo, hi) sample steps per centroid row
    dist     [B, C]

The forward pass fuses local cost, accumulated cost and backtracking per
(sample, group of classes): a group stacks enough classes to give the local-cost
micro-kernel 64 centroid rows (one class at K = 64, eight at K = 8), so its
temporaries are one [G*K, T] matrix per thread and, with 3 or more classes, one
group's (mu, w) rows per thread on whole cache lines (see ``_row_width``).  x is
read in place when it comes in that layout (a batch from
:func:`dejavid.data.dataset.collate_packed`), else copied to it.  Path cost and gradients
touch only the path's K + T - 1 cells per pair: threads split the C * K centroid
rows, each owning its rows of the [C, K, F] gradients and summing samples in order,
so results do not depend on the thread count.
"""
from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np
import torch

from .backend import Backend, packed_row_width

try:
    from numba import get_num_threads, njit, prange
    _HAVE_NUMBA = True
except ImportError:  # the module must still import so that dispatch can fall back
    _HAVE_NUMBA = False
    prange = range

    def njit(*args, **kwargs):
        if args and callable(args[0]):
            return args[0]
        return lambda fn: fn

# Reassociation lets LLVM vectorise the feature reductions; no 'nnan'/'ninf',
# the DP compares against +inf.
_FAST = {"reassoc", "contract", "nsz", "arcp"}


def _cache_kernels() -> bool:
    """Whether the kernels below can be cached on disk (``cache=True``).

    numba caches beside this file, or in ``NUMBA_CACHE_DIR``, or under the user's home;
    when none is writable (a read-only install with an unwritable HOME) decorating
    with ``cache=True`` raises "cannot cache function".  Then a private folder under the
    temporary directory is used, and failing that nothing is cached (the kernels compile
    in each process); either way with one warning."""
    if not _HAVE_NUMBA:
        return False
    from numba.core import caching, config

    def probe():   # a function of this file: the locators judge by its source path
        pass

    try:
        caching.FunctionCache(probe)
        return True
    except (RuntimeError, OSError):
        pass
    old = config.CACHE_DIR
    folder = os.path.join(tempfile.gettempdir(), f"dejavid-numba-cache-{os.getuid()}")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        config.CACHE_DIR = folder
        caching.FunctionCache(probe)
        warnings.warn(f"numba cannot cache compiled kernels beside {__file__} or in the home "
                      f"folder; caching them in {folder} (set NUMBA_CACHE_DIR to choose)",
                      RuntimeWarning, stacklevel=2)
        return True
    except (RuntimeError, OSError):
        config.CACHE_DIR = old
    warnings.warn(f"numba cannot cache compiled kernels anywhere (not beside {__file__}, in "
                  f"the home folder or in {folder}); they are compiled again in each process. "
                  f"Set NUMBA_CACHE_DIR to a writable folder to cache them",
                  RuntimeWarning, stacklevel=2)
    return False


_CACHE = _cache_kernels()


def available() -> bool:
    """True when numba can be imported."""
    return _HAVE_NUMBA


# --------------------------------------------------------------------------- kernels

@njit(nogil=True, cache=_CACHE, fastmath=_FAST)
def _cost_rows(xb, mu, w, D, i_lo, i_hi, j_lo):
    """D[i, j] for rows i in [i_lo, i_hi) and columns j in [j_lo, T): four sample steps
    per pass over F, then one at a time (the edges of :func:`_local_cost_pair`)."""
    F = mu.shape[1]
    T = xb.shape[0]
    zero = D.dtype.type(0)
    T4 = T - (T - j_lo) % 4
    for i in range(i_lo, i_hi):
        mi = mu[i]
        wi = w[i]
        for j in range(j_lo, T4, 4):
            x0 = xb[j]
            x1 = xb[j + 1]
            x2 = xb[j + 2]
            x3 = xb[j + 3]
            s0 = zero
            s1 = zero
            s2 = zero
            s3 = zero
            for f in range(F):
                m = mi[f]
                v = wi[f]
                s0 += v * abs(m - x0[f])
                s1 += v * abs(m - x1[f])
                s2 += v * abs(m - x2[f])
                s3 += v * abs(m - x3[f])
            D[i, j] = s0
            D[i, j + 1] = s1
            D[i, j + 2] = s2
            D[i, j + 3] = s3
        for j in range(T4, T):
            xj = xb[j]
            s = zero
            for f in range(F):
                s += wi[f] * abs(mi[f] - xj[f])
            D[i, j] = s


@njit(nogil=True, cache=_CACHE, fastmath=_FAST)
def _local_cost_pair(xb, mu, w, D):
    """D[i, j] = sum_f w[i, f] |mu[i, f] - xb[j, f]|;  xb [T, F], mu/w [K, F], D [K, >=T].

    Register-blocked like a GEMM micro-kernel: 4 centroid rows x 4 sample steps per
    pass over F, 16 accumulators, so each loaded (mu, w) pair feeds four sample steps
    and each loaded x value four rows.  With one row per pass the loop was bound by
    the loads from L2 (1.8x slower single-threaded at the HMDB51 shape).  T is covered
    by blocks of 4 and then up to three blocks of 3 sample steps (T = 33 = 6 x 4 +
    3 x 3), because a column left over runs about 3x slower per element (one row at a
    time, bound by loads); that made T = 33, 34, 35 cost 3-11 % more per column than
    T = 32.  What is left (rows K % 4; columns when T < 6, or T = 5) goes through
    :func:`_cost_rows`.  One feature (univariate series) goes cell by cell: nothing is
    reused there, and each cell is the same single product as in the blocks.
    """
    K, F = mu.shape
    T = xb.shape[0]
    zero = D.dtype.type(0)
    if F == 1:
        for i in range(K):
            a = mu[i, 0]
            v = w[i, 0]
            for j in range(T):
                D[i, j] = zero + v * abs(a - xb[j, 0])
        return
    K4 = K - K % 4
    n3 = (4 - T % 4) % 4        # blocks of 3 that make the rest a multiple of 4
    if 3 * n3 > T:
        n3 = 0
    T4 = ((T - 3 * n3) // 4) * 4  # columns in blocks of 4
    TC = T4 + 3 * n3              # columns in blocks of 4 or 3; [TC, T) by _cost_rows
    for i in range(0, K4, 4):
        m0 = mu[i]
        v0 = w[i]
        m1 = mu[i + 1]
        v1 = w[i + 1]
        m2 = mu[i + 2]
        v2 = w[i + 2]
        m3 = mu[i + 3]
        v3 = w[i + 3]
        for j in range(0, T4, 4):
            x0 = xb[j]
            x1 = xb[j + 1]
            x2 = xb[j + 2]
            x3 = xb[j + 3]
            s00 = s01 = s02 = s03 = zero
            s10 = s11 = s12 = s13 = zero
            s20 = s21 = s22 = s23 = zero
            s30 = s31 = s32 = s33 = zero
            for f in range(F):
                y0 = x0[f]
                y1 = x1[f]
                y2 = x2[f]
                y3 = x3[f]
                a = m0[f]
                v = v0[f]
                s00 += v * abs(a - y0)
                s01 += v * abs(a - y1)
                s02 += v * abs(a - y2)
                s03 += v * abs(a - y3)
                a = m1[f]
                v = v1[f]
                s10 += v * abs(a - y0)
                s11 += v * abs(a - y1)
                s12 += v * abs(a - y2)
                s13 += v * abs(a - y3)
                a = m2[f]
                v = v2[f]
                s20 += v * abs(a - y0)
                s21 += v * abs(a - y1)
                s22 += v * abs(a - y2)
                s23 += v * abs(a - y3)
                a = m3[f]
                v = v3[f]
                s30 += v * abs(a - y0)
                s31 += v * abs(a - y1)
                s32 += v * abs(a - y2)
                s33 += v * abs(a - y3)
            D[i, j] = s00
            D[i, j + 1] = s01
            D[i, j + 2] = s02
            D[i, j + 3] = s03
            D[i + 1, j] = s10
            D[i + 1, j + 1] = s11
            D[i + 1, j + 2] = s12
            D[i + 1, j + 3] = s13
            D[i + 2, j] = s20
            D[i + 2, j + 1] = s21
            D[i + 2, j + 2] = s22
            D[i + 2, j + 3] = s23
            D[i + 3, j] = s30
            D[i + 3, j + 1] = s31
            D[i + 3, j + 2] = s32
            D[i + 3, j + 3] = s33
        for j in range(T4, TC, 3):
            x0 = xb[j]
            x1 = xb[j + 1]
            x2 = xb[j + 2]
            s00 = s01 = s02 = zero
            s10 = s11 = s12 = zero
            s20 = s21 = s22 = zero
            s30 = s31 = s32 = zero
            for f in range(F):
                y0 = x0[f]
                y1 = x1[f]
                y2 = x2[f]
                a = m0[f]
                v = v0[f]
                s00 += v * abs(a - y0)
                s01 += v * abs(a - y1)
                s02 += v * abs(a - y2)
                a = m1[f]
                v = v1[f]
                s10 += v * abs(a - y0)
                s11 += v * abs(a - y1)
                s12 += v * abs(a - y2)
                a = m2[f]
                v = v2[f]
                s20 += v * abs(a - y0)
                s21 += v * abs(a - y1)
                s22 += v * abs(a - y2)
                a = m3[f]
                v = v3[f]
                s30 += v * abs(a - y0)
                s31 += v * abs(a - y1)
                s32 += v * abs(a - y2)
            D[i, j] = s00
            D[i, j + 1] = s01
            D[i, j + 2] = s02
            D[i + 1, j] = s10
            D[i + 1, j + 1] = s11
            D[i + 1, j + 2] = s12
            D[i + 2, j] = s20
            D[i + 2, j + 1] = s21
            D[i + 2, j + 2] = s22
            D[i + 3, j] = s30
            D[i + 3, j + 1] = s31
            D[i + 3, j + 2] = s32
    _cost_rows(xb, mu, w, D, 0, K4, TC)   # columns [TC, T) of the blocked rows
    _cost_rows(xb, mu, w, D, K4, K, 0)    # last K % 4 rows, every column


@njit(nogil=True, cache=_CACHE)
def _accumulate_pair(A, T, hvd):
    """In place: local cost A [K, >=T] -> accumulated cost over its first T columns.

    The cell to the left is carried in a register (``left``) and the two cells of the row
    above are compared first, so the chain from one cell to the next is one min and one
    add (reloading A[i, j - 1] just stored, and comparing it first, made it longer).  The
    minimum of the same values is the same value in any order: the result is bitwise
    that of the plain recursion."""
    K = A.shape[0]
    left = A[0, 0]
    for j in range(1, T):
        left = A[0, j] + left
        A[0, j] = left
    for i in range(1, K):
        left = A[i, 0] + A[i - 1, 0]
        A[i, 0] = left
        for j in range(1, T):
            above = A[i - 1, j]
            if hvd:
                above = min(above, A[i - 1, j - 1])
            left = A[i, j] + min(above, left)
            A[i, j] = left


@njit(nogil=True, cache=_CACHE)
def _accumulate_band(A, T, hvd, rows):
    """:func:`_accumulate_pair` restricted to the band's cells, on an A whose cells beside
    the band that it reads hold +inf (:func:`_band_cost_pair`).  A full pass over a grid
    with +inf outside the band gives the same accumulated costs on the band (a cell
    outside accumulates inf plus any neighbour, inf), so this is the same result."""
    K = A.shape[0]
    left = A[0, 0]
    for j in range(1, rows[0, 1] + 1):
        left = A[0, j] + left
        A[0, j] = left
    for i in range(1, K):
        lo = rows[i, 0]
        if lo == 0:
            A[i, 0] += A[i - 1, 0]
            lo = 1
        left = A[i, lo - 1]   # +inf beside the band, or the cell just accumulated
        for j in range(lo, rows[i, 1] + 1):
            above = A[i - 1, j]
            if hvd:
                above = min(above, A[i - 1, j - 1])
            left = A[i, j] + min(above, left)
            A[i, j] = left


@njit(nogil=True, cache=_CACHE)
def _band_cost_pair(xb, m, v, A, T, rows):
    """Local costs of the band's cells only, then +inf on the cells beside it that the
    accumulation and backtracking read (:func:`_accumulate_band`): per row i, column
    lo_i - 1 and the columns (hi_i, hi_{i+1}].  Every other cell outside the band is left
    as it was and never read, so every cell that is read holds what a full
    :func:`_local_cost_pair` followed by +inf outside the band would give it.  Rows go in
    blocks of four through :func:`_local_cost_pair` on the block's columns (lo and hi do
    not decrease with the row; one row at a time with one feature), so a 10 % band
    computes about a fifth of the grid."""
    K = A.shape[0]
    inf = A.dtype.type(np.inf)
    # one feature: row by row (each row's own columns; its cells reuse nothing anyway)
    step = 1 if m.shape[1] == 1 else 4
    for i0 in range(0, K, step):
        i1 = min(i0 + step, K)
        lo = rows[i0, 0]
        hi = rows[i1 - 1, 1]
        _local_cost_pair(xb[lo:hi + 1], m[i0:i1], v[i0:i1], A[i0:i1, lo:])
    for i in range(K):
        lo = rows[i, 0]
        if lo > 0:
            A[i, lo - 1] = inf
        if i + 1 < K:
            for j in range(rows[i, 1] + 1, min(rows[i + 1, 1], T - 1) + 1):
                A[i, j] = inf


@njit(nogil=True, cache=_CACHE)
def _open_columns(A, T):
    """Local cost 0 in the first and last of a pair's T columns (open ends: the end
    steps that :func:`dejavid.alignment.op.align` adds, docs/DESIGN.md section 3.3.2); on
    the lanes' [K, T, L] grid, in every lane."""
    for i in range(A.shape[0]):
        A[i, 0] = 0.0
        A[i, T - 1] = 0.0


@njit(nogil=True, cache=_CACHE)
def _backtrack_pair(A, T, hvd, path):
    """Path [K, 2] from (K-1, T-1) to (0, 0) with the tie rules of DESIGN section 3."""
    K = A.shape[0]
    i = K - 1
    j = T - 1
    path[i, 1] = j
    while True:
        path[i, 0] = j  # lowest j seen so far on row i
        if i == 0 and j == 0:
            break
        if i == 0:
            j -= 1
            continue
        if j == 0:
            i -= 1
            path[i, 1] = j
            continue
        a = A[i - 1, j]
        b = A[i, j - 1]
        if hvd:
            g = A[i - 1, j - 1]
            if a < b and a < g:
                i -= 1
            elif b < g:
                j -= 1
                continue
            else:
                i -= 1
                j -= 1
        elif a < b:
            i -= 1
        else:
            j -= 1
            continue
        path[i, 1] = j  # entered a new row: its highest j is where we arrive


@njit(nogil=True, cache=_CACHE)
def _group_rows(mu, w, c0, gs, own):
    """own[0, :gs*K, :F] <- mu[c0:c0+gs] and own[1] <- w[...] as [gs*K, F] rows;
    columns from F on stay as they are (zero)."""
    K, F = mu.shape[1], mu.shape[2]
    for k in range(gs):
        for i in range(K):
            r = k * K + i
            src = mu[c0 + k, i]
            dst = own[0, r]
            for f in range(F):
                dst[f] = src[f]
            src = w[c0 + k, i]
            dst = own[1, r]
            for f in range(F):
                dst[f] = src[f]


@njit(nogil=True, cache=_CACHE)
def _group_of(mu2, w2, K, c0, gs, own, current, copy, mu, w):
    """(mu rows, w rows, group now in ``own``) for classes [c0, c0 + gs) as [gs*K, .]
    row blocks: the task's scratch ``own`` [2, G*K, W], refilled when c0 is not the
    group it holds, or with ``copy`` false the rows of mu2/w2 [C*K, F] in place."""
    if not copy:
        return mu2[c0 * K:(c0 + gs) * K], w2[c0 * K:(c0 + gs) * K], current
    if c0 != current:
        _group_rows(mu, w, c0, gs, own)
    return own[0, :gs * K], own[1, :gs * K], c0


@njit(nogil=True, cache=_CACHE)
def _pair_share(C, B, task, n):
    """[lo, hi): the share of task ``task`` of ``n`` among the C * B (class, sample)
    pairs, numbered as the units (tile, group, sample) of :func:`_forward_all` cover
    them; a task takes the units whose first pair falls in it, so every task gets
    C * B / n pairs, give or take one unit."""
    total = C * B
    return task * total // n, (task + 1) * total // n


@njit(nogil=True, cache=_CACHE, parallel=True)
def _forward_all(x, offsets, mu, w, G, tile, rows, hvd, band, open_ends, dist, paths):
    """Every (sample, class) pair; ``rows`` [n, 2, G*K, W] is scratch for n tasks;
    ``band`` [B, K, 2] the warping band's rows per sample, or [0, K, 2] for none;
    ``open_ends``: each sample's first and last column cost 0 (:func:`_open_columns`).

    Classes go in groups of G whose centroid rows are stacked into one [G*K, F]
    block, so the local-cost micro-kernel sees G*K rows per sample (as many as one
    class has at K = 64) and each sample's x feeds them all.  Samples go in tiles of
    ``tile``; the units (tile, group, sample) are numbered in that order, and task t
    takes those whose first pair falls in the t-th of n equal shares of the C * B
    pairs, so a tile's x, read once from memory, stays in cache while the groups
    pass.  A task copies a group's (mu, w) into its own cache-line aligned,
    zero-padded rows (see ``_row_width``) when the group changes; ``x`` comes with
    rows of the same width.  With W = 0 the tasks read mu and w in place instead.
    No result depends on n or tile: each pair's costs come from the same rows,
    blocks and summation order whichever task computes them.
    """
    B = offsets.shape[0] - 1
    C, K, F = mu.shape
    n = rows.shape[0]
    copy = rows.shape[3] > 0  # else the kernel reads mu and w in place
    mu2 = mu.reshape(C * K, F)
    w2 = w.reshape(C * K, F)
    tmax = 1
    for b in range(B):
        tmax = max(tmax, offsets[b + 1] - offsets[b])
    n_groups = (C + G - 1) // G
    for task in prange(n):
        own = rows[task]
        lo, hi = _pair_share(C, B, task, n)
        A = np.empty((G * K, tmax), dtype=x.dtype)  # the task's [G*K, T] temporary
        current = -1
        for b0 in range(0, B, tile):
            nb = min(tile, B - b0)
            for g in range(n_groups):
                c0 = g * G
                gs = min(G, C - c0)
                for b in range(b0, b0 + nb):
                    first = C * b0 + c0 * nb + (b - b0) * gs
                    if first < lo or first >= hi:
                        continue
                    m, v, current = _group_of(mu2, w2, K, c0, gs, own, current, copy, mu, w)
                    t0 = offsets[b]
                    T = offsets[b + 1] - t0
                    if band.shape[0] == 0:
                        _local_cost_pair(x[t0:t0 + T], m, v, A)
                    for k in range(gs):
                        Ak = A[k * K:(k + 1) * K]
                        if band.shape[0] > 0:
                            _band_cost_pair(x[t0:t0 + T], m[k * K:(k + 1) * K],
                                            v[k * K:(k + 1) * K], Ak, T, band[b])
                            if open_ends:
                                _open_columns(Ak, T)
                            _accumulate_band(Ak, T, hvd, band[b])
                        else:
                            if open_ends:
                                _open_columns(Ak, T)
                            _accumulate_pair(Ak, T, hvd)
                        dist[b, c0 + k] = Ak[K - 1, T - 1]
                        _backtrack_pair(Ak, T, hvd, paths[b, c0 + k])


# --- the forward in lanes: many prototypes of few features (docs/DESIGN.md section 7) ---
# One sample against L prototypes at once: the [K, T, L] grid holds L independent DPs
# side by side, so every cell's local cost, minimum and sum are one vector operation over
# the prototypes, where :func:`_forward_all` walks one prototype's chain of dependent
# cells at a time.  Each lane does exactly the scalar recursion (the same sums in the same
# order for one feature, the same minima), and the paths come from
# :func:`_backtrack_pair` on the lane's own [K, T] slice, so ties go the same way.

@njit(nogil=True, cache=_CACHE, fastmath=_FAST)
def _lane_cost_rows(xb, mL, vL, A, rows):
    """A[i, j, l] = sum_f vL[i, f, l] |mL[i, f, l] - xb[j, f]| over the band's cells
    (``rows`` [K, 2] inclusive columns per row), f in order for every lane l.  Four
    sample steps per pass over F share each loaded (mL, vL) row, then one at a time: the
    same sums in the same order either way."""
    K, F, L = mL.shape
    zero = A.dtype.type(0)
    for i in range(K):
        mi = mL[i]
        vi = vL[i]
        j = rows[i, 0]
        hi = rows[i, 1] + 1
        while j + 4 <= hi:
            a0 = A[i, j]
            a1 = A[i, j + 1]
            a2 = A[i, j + 2]
            a3 = A[i, j + 3]
            for l in range(L):
                a0[l] = zero
                a1[l] = zero
                a2[l] = zero
                a3[l] = zero
            x0 = xb[j]
            x1 = xb[j + 1]
            x2 = xb[j + 2]
            x3 = xb[j + 3]
            for f in range(F):
                mf = mi[f]
                vf = vi[f]
                y0 = x0[f]
                y1 = x1[f]
                y2 = x2[f]
                y3 = x3[f]
                for l in range(L):
                    m = mf[l]
                    v = vf[l]
                    a0[l] += v * abs(m - y0)
                    a1[l] += v * abs(m - y1)
                    a2[l] += v * abs(m - y2)
                    a3[l] += v * abs(m - y3)
            j += 4
        while j < hi:
            a = A[i, j]
            for l in range(L):
                a[l] = zero
            xj = xb[j]
            for f in range(F):
                xv = xj[f]
                mf = mi[f]
                vf = vi[f]
                for l in range(L):
                    a[l] += vf[l] * abs(mf[l] - xv)
            j += 1


@njit(nogil=True, cache=_CACHE)
def _lane_margins(A, T, rows):
    """+inf on the cells beside the band that the accumulation and backtracking read,
    in every lane: the cells :func:`_band_cost_pair` sets (none when rows span [0, T))."""
    K, _, L = A.shape
    inf = A.dtype.type(np.inf)
    for i in range(K):
        lo = rows[i, 0]
        if lo > 0:
            for l in range(L):
                A[i, lo - 1, l] = inf
        if i + 1 < K:
            for j in range(rows[i, 1] + 1, min(rows[i + 1, 1], T - 1) + 1):
                for l in range(L):
                    A[i, j, l] = inf


@njit(nogil=True, cache=_CACHE)
def _lane_accumulate(A, hvd, rows):
    """In place, every lane: local cost -> accumulated cost over the band's cells, the
    recursion of :func:`_accumulate_band` (the same minima and sums per lane)."""
    K, _, L = A.shape
    for j in range(1, rows[0, 1] + 1):
        cur = A[0, j]
        left = A[0, j - 1]
        for l in range(L):
            cur[l] += left[l]
    for i in range(1, K):
        lo = rows[i, 0]
        if lo == 0:
            cur = A[i, 0]
            up = A[i - 1, 0]
            for l in range(L):
                cur[l] += up[l]
            lo = 1
        for j in range(lo, rows[i, 1] + 1):
            up = A[i - 1, j]
            cur = A[i, j]
            left = A[i, j - 1]
            if hvd:
                dg = A[i - 1, j - 1]
                for l in range(L):
                    cur[l] += min(min(up[l], dg[l]), left[l])
            else:
                for l in range(L):
                    cur[l] += min(up[l], left[l])


@njit(nogil=True, cache=_CACHE, parallel=True)
def _forward_lanes(x, offsets, mL, vL, C, band, n, hvd, open_ends, dist, paths):
    """Every (sample, class) pair, L classes per pass: mL/vL [P, K, F, L] hold class
    p * L + l in lane l of block p (lanes from C on are padding, w = 0, never read back);
    ``band`` [B, K, 2] the inclusive columns of each sample's rows (all of [0, T_b) for no
    band); ``n`` tasks split the B * P (sample, block) units in equal shares; ``open_ends``
    as in :func:`_forward_all`.  No result depends on n: each unit is computed alike
    whichever task takes it."""
    B = offsets.shape[0] - 1
    P, K, F, L = mL.shape
    tmax = 1
    for b in range(B):
        tmax = max(tmax, offsets[b + 1] - offsets[b])
    units = B * P
    for task in prange(n):
        A = np.empty((K, tmax, L), dtype=x.dtype)  # the task's L grids, lane innermost
        for u in range(task * units // n, (task + 1) * units // n):
            b = u // P
            p = u % P
            t0 = offsets[b]
            T = offsets[b + 1] - t0
            rows = band[b]
            _lane_cost_rows(x[t0:t0 + T], mL[p], vL[p], A, rows)
            _lane_margins(A, T, rows)
            if open_ends:
                _open_columns(A, T)
            _lane_accumulate(A, hvd, rows)
            for l in range(L):
                c = p * L + l
                if c < C:
                    dist[b, c] = A[K - 1, T - 1, l]
                    _backtrack_pair(A[:, :, l], T, hvd, paths[b, c])


@njit(nogil=True, cache=_CACHE, parallel=True)
def _local_cost_all(x, offsets, mu, w, G, tile, rows, out):
    """Local costs only, out [B, C, K, Tmax] (benchmarking and tests); tasks, class
    groups and sample tiles as in :func:`_forward_all`."""
    B = offsets.shape[0] - 1
    C, K, F = mu.shape
    n = rows.shape[0]
    copy = rows.shape[3] > 0  # else the kernel reads mu and w in place
    mu2 = mu.reshape(C * K, F)
    w2 = w.reshape(C * K, F)
    tmax = out.shape[3]
    n_groups = (C + G - 1) // G
    for task in prange(n):
        own = rows[task]
        lo, hi = _pair_share(C, B, task, n)
        A = np.empty((G * K, tmax), dtype=x.dtype)
        current = -1
        for b0 in range(0, B, tile):
            nb = min(tile, B - b0)
            for g in range(n_groups):
                c0 = g * G
                gs = min(G, C - c0)
                for b in range(b0, b0 + nb):
                    first = C * b0 + c0 * nb + (b - b0) * gs
                    if first < lo or first >= hi:
                        continue
                    m, v, current = _group_of(mu2, w2, K, c0, gs, own, current, copy, mu, w)
                    t0 = offsets[b]
                    T = offsets[b + 1] - t0
                    _local_cost_pair(x[t0:t0 + T], m, v, A)
                    for k in range(gs):
                        for i in range(K):
                            for j in range(T):
                                out[b, c0 + k, i, j] = A[k * K + i, j]


@njit(nogil=True, cache=_CACHE, fastmath=_FAST)
def _run_cost(xb, lo, hi, m, v):
    """sum_{j = lo..hi} sum_f v[f] |m[f] - xb[j, f]|: one row's run of path cells.

    Four sample steps per pass over F (then two, then one), so each loaded (m, v)
    pair serves four cells: with one cell per pass the loop is bound by its three
    loads per element."""
    F = m.shape[0]
    zero = m.dtype.type(0)
    total = zero
    j = lo
    while j + 3 <= hi:
        x0 = xb[j]
        x1 = xb[j + 1]
        x2 = xb[j + 2]
        x3 = xb[j + 3]
        s = zero
        for f in range(F):
            a = m[f]
            s += v[f] * ((abs(a - x0[f]) + abs(a - x1[f])) + (abs(a - x2[f]) + abs(a - x3[f])))
        total += s
        j += 4
    if j + 1 <= hi:
        x0 = xb[j]
        x1 = xb[j + 1]
        s = zero
        for f in range(F):
            a = m[f]
            s += v[f] * (abs(a - x0[f]) + abs(a - x1[f]))
        total += s
        j += 2
    if j <= hi:
        x0 = xb[j]
        s = zero
        for f in range(F):
            s += v[f] * abs(m[f] - x0[f])
        total += s
    return total


@njit(nogil=True, cache=_CACHE, fastmath=_FAST)
def _run_grads(xb, lo, hi, m, gbc, at, am):
    """at[f] += gbc * sum_j |m[f] - xb[j, f]| and am[f] += gbc * sum_j sign(m[f] - xb[j, f])
    over one row's run j = lo..hi (w is applied once, at the end); blocked as
    :func:`_run_cost`."""
    F = m.shape[0]
    zero = m.dtype.type(0)
    one = m.dtype.type(1)
    j = lo
    while j + 3 <= hi:
        x0 = xb[j]
        x1 = xb[j + 1]
        x2 = xb[j + 2]
        x3 = xb[j + 3]
        for f in range(F):
            a = m[f]
            d0 = a - x0[f]
            d1 = a - x1[f]
            d2 = a - x2[f]
            d3 = a - x3[f]
            at[f] += gbc * ((abs(d0) + abs(d1)) + (abs(d2) + abs(d3)))
            # sign(d) as selects (sign(0) = 0), so the loop vectorises
            p = ((one if d0 > zero else zero) + (one if d1 > zero else zero)) + \
                ((one if d2 > zero else zero) + (one if d3 > zero else zero))
            q = ((one if d0 < zero else zero) + (one if d1 < zero else zero)) + \
                ((one if d2 < zero else zero) + (one if d3 < zero else zero))
            am[f] += gbc * (p - q)
        j += 4
    if j + 1 <= hi:
        x0 = xb[j]
        x1 = xb[j + 1]
        for f in range(F):
            a = m[f]
            d0 = a - x0[f]
            d1 = a - x1[f]
            at[f] += gbc * (abs(d0) + abs(d1))
            p = (one if d0 > zero else zero) + (one if d1 > zero else zero)
            q = (one if d0 < zero else zero) + (one if d1 < zero else zero)
            am[f] += gbc * (p - q)
        j += 2
    if j <= hi:
        x0 = xb[j]
        for f in range(F):
            d0 = m[f] - x0[f]
            at[f] += gbc * abs(d0)
            am[f] += gbc if d0 > zero else (-gbc if d0 < zero else zero)


@njit(nogil=True, cache=_CACHE, parallel=True)
def _path_cost_all(x, offsets, mu, w, paths, n, tile, chunk, part, dist):
    """dist [B, C] along fixed paths; ``part`` [B, C*K] scratch for the rows' sums.

    Parallel over the C*K centroid rows (task t owns the t-th of n equal row ranges,
    so both cores work whatever C and K); a task walks its rows in chunks of
    ``chunk`` (their mu and w stay in L2) and the samples in tiles of ``tile``
    (their x stays in the shared L3), so each x and each centroid row is read from
    memory about once per tile rather than once per pair.  Every row's sum, and
    dist[b, c] = sum over i in order, is computed the same way whatever n.
    """
    B = offsets.shape[0] - 1
    C, K, F = mu.shape
    R = C * K
    mu2 = mu.reshape(R, F)
    w2 = w.reshape(R, F)
    for task in prange(n):
        r_lo = task * R // n
        r_hi = (task + 1) * R // n
        for b0 in range(0, B, tile):
            b1 = min(B, b0 + tile)
            for q0 in range(r_lo, r_hi, chunk):
                q1 = min(r_hi, q0 + chunk)
                for b in range(b0, b1):
                    t0 = offsets[b]
                    xb = x[t0:offsets[b + 1]]
                    for r in range(q0, q1):
                        c = r // K
                        i = r - c * K
                        part[b, r] = _run_cost(xb, paths[b, c, i, 0], paths[b, c, i, 1],
                                               mu2[r], w2[r])
    zero = dist.dtype.type(0)
    for b in prange(B):
        for c in range(C):
            total = zero
            for i in range(K):
                total += part[b, c * K + i]
            dist[b, c] = total


@njit(nogil=True, cache=_CACHE, parallel=True)
def _param_grads(x, offsets, mu, w, paths, g, n, tile, chunk, gmu, gtheta):
    """gmu/gtheta [C, K, F] = w * sum_b g[b, c] * (sum_j sign / |.|) along the paths.

    Tasks, row chunks and sample tiles as in :func:`_path_cost_all`; a task owns its
    rows of gmu and gtheta, so nothing is shared between threads, and each row sums
    its samples in order b = 0, 1, ... whatever n (bitwise reproducible)."""
    B = offsets.shape[0] - 1
    C, K, F = mu.shape
    R = C * K
    mu2 = mu.reshape(R, F)
    w2 = w.reshape(R, F)
    gm2 = gmu.reshape(R, F)
    gt2 = gtheta.reshape(R, F)
    for task in prange(n):
        r_lo = task * R // n
        r_hi = (task + 1) * R // n
        for b0 in range(0, B, tile):
            b1 = min(B, b0 + tile)
            for q0 in range(r_lo, r_hi, chunk):
                q1 = min(r_hi, q0 + chunk)
                for b in range(b0, b1):
                    t0 = offsets[b]
                    xb = x[t0:offsets[b + 1]]
                    for r in range(q0, q1):
                        c = r // K
                        i = r - c * K
                        _run_grads(xb, paths[b, c, i, 0], paths[b, c, i, 1], mu2[r], g[b, c],
                                   gt2[r], gm2[r])
        for r in range(r_lo, r_hi):
            wr = w2[r]
            gt = gt2[r]
            gm = gm2[r]
            for f in range(F):
                gt[f] *= wr[f]
                gm[f] *= wr[f]


@njit(nogil=True, cache=_CACHE, parallel=True)
def _x_grads(x, offsets, mu, w, paths, g, gx):
    """gx [N, F]: one sample per thread, classes and rows in order."""
    B = offsets.shape[0] - 1
    C, K, F = mu.shape
    zero = gx.dtype.type(0)
    for b in prange(B):
        t0 = offsets[b]
        for c in range(C):
            gbc = g[b, c]
            for i in range(K):
                mi = mu[c, i]
                wi = w[c, i]
                for j in range(paths[b, c, i, 0], paths[b, c, i, 1] + 1):
                    xj = x[t0 + j]
                    gj = gx[t0 + j]
                    for f in range(F):
                        d = mi[f] - xj[f]
                        gw = gbc * wi[f]
                        gj[f] -= gw if d > zero else (-gw if d < zero else zero)


@njit(nogil=True, cache=_CACHE, parallel=True)
def _dba_all(x, offsets, paths, sums, counts):
    B = offsets.shape[0] - 1
    K, F = sums.shape
    for i in prange(K):
        s = sums[i]
        for b in range(B):
            t0 = offsets[b]
            lo = paths[b, 0, i, 0]
            hi = paths[b, 0, i, 1]
            for j in range(lo, hi + 1):
                xj = x[t0 + j]
                for f in range(F):
                    s[f] += xj[f]
            counts[i] += hi - lo + 1


@njit(nogil=True, cache=_CACHE)
def _paths_in_range(offsets, paths):
    B, C, K, _ = paths.shape
    for b in range(B):
        T = offsets[b + 1] - offsets[b]
        for c in range(C):
            for i in range(K):
                lo = paths[b, c, i, 0]
                hi = paths[b, c, i, 1]
                if lo < 0 or hi < lo or hi >= T:
                    return False
    return True


# --------------------------------------------------------------------------- wrappers

def _require_cpu(t: torch.Tensor) -> None:
    if t.device.type != "cpu":
        raise ValueError(f"the numba backend runs on CPU tensors, got a {t.device.type} tensor")


def _np(t: torch.Tensor) -> np.ndarray:
    """Contiguous CPU numpy view (copies only when the tensor is not contiguous)."""
    _require_cpu(t)
    return t.detach().contiguous().numpy()


def _exp(theta: torch.Tensor) -> np.ndarray:
    """w = exp(theta) as a contiguous array (torch's exp: vectorised and threaded)."""
    return _np(torch.exp(theta.detach()))


# The copies (x padded, each class's rows) pay off only when enough classes share x.
# Measured, 50 samples x K 64 x F 1459: with 1 class the forward took 12.2 ms with
# them vs 11.4 ms without; with 4 classes 40.5 vs 45.1 ms (break-even near 2).
_PAD_MIN_C = 3


def _row_width(F: int) -> int:
    """Row length the local-cost kernels run over: F rounded up to whole cache lines
    (:func:`dejavid.alignment.backend.packed_row_width`, the layout of a packed batch).

    With F = 1459 (HMDB51) most rows start inside a cache line, so most 512-bit
    loads of the micro-kernel straddle two lines, and every 4x4 block ends with a
    scalar remainder.  Rows padded with zeros (w = 0 there, so the padding adds
    exactly 0 to every sum) on a 64-byte aligned base make every load whole:
    the local-cost stage went from 35 % to 43 % of the same-run matmul at the
    HMDB51 shape (2-core Intel machine, medians of 12 alternating rounds).  On the
    2-core AMD machine the K = 8 forward was 1.2x faster on a batch in that layout
    than on a plain one (2026-11-27).  Small F is left alone: up to 15 padding
    columns would cost more than they save.
    """
    return packed_row_width(F)


def _x_rows(t: torch.Tensor) -> np.ndarray:
    """x [N, F] for the kernels that loop over f < F only: the [N, W] rows it is the
    first F columns of (a packed batch, see :func:`dejavid.data.dataset.collate_packed`),
    else a contiguous view or copy."""
    _require_cpu(t)
    t = t.detach()
    if t.dim() == 2 and t.stride(1) == 1 and t.stride(0) > t.shape[1] and t.shape[0] > 0:
        N, W = t.shape[0], t.stride(0)
        storage_elems = t.untyped_storage().nbytes() // t.element_size()
        if t.storage_offset() + N * W <= storage_elems:
            return t.as_strided((N, W), (W, 1)).numpy()
    return _np(t)


def _padded_base(t: torch.Tensor, width: int):
    """The [N, width] rows that a 2-D ``t`` [N, F] is the first F columns of, as a
    C-contiguous array, when t is such a view on a 64-byte aligned base with zeros
    beyond F (the layout :func:`dejavid.data.dataset.collate_packed` builds); else None."""
    if t.dim() != 2 or t.stride() != (width, 1) or t.data_ptr() % 64 or t.shape[0] == 0:
        return None
    N, F = t.shape
    storage_elems = t.untyped_storage().nbytes() // t.element_size()
    if t.storage_offset() + N * width > storage_elems:
        return None
    full = t.as_strided((N, width), (width, 1)).numpy()
    if full[:, F:].any():
        return None
    return full


def _rows(t: torch.Tensor, width: int) -> np.ndarray:
    """t [..., F] as a contiguous, 64-byte aligned array [..., width], zero beyond F;
    no copy when t already is one, or is the first F columns of one."""
    _require_cpu(t)
    t = t.detach()
    F = t.shape[-1]
    if width == F and t.is_contiguous() and t.data_ptr() % 64 == 0:
        return t.numpy()
    if width != F:
        full = _padded_base(t, width)
        if full is not None:
            return full
    out = torch.empty(t.shape[:-1] + (width,), dtype=t.dtype)  # torch aligns to 64 bytes
    out[..., :F].copy_(t)
    out[..., F:].zero_()
    return out.numpy()


# Forward: classes per local-cost group, G = max(1, _GROUP_ROWS // K) (at most C).  At
# K = 64 one class already gives the micro-kernel 64 rows per sample; at K = 8 a group
# of 8 classes does the same, so each sample's x, streamed from memory (a batch is
# larger than the caches), serves 64 rows instead of 8.  Measured on the 2-core AMD
# machine, K = 8, C = 51, 384 samples, one thread, CPU time: forward 1.5-1.6x faster
# than one class at a time; 32 or 128 rows per group 4-7 % slower than 64.
_GROUP_ROWS = 64


def _group_size(C: int, K: int) -> int:
    """Classes per local-cost group of :func:`_forward_all`."""
    return max(1, min(C, _GROUP_ROWS // K))


# Forward: samples per tile, so that a tile's x stays in the shared L3 while all class
# groups pass over it (x is then read from memory once, not once per group).  Measured
# (one thread, CPU time, 384 samples, C = 51): 4 MB tiles 6 % faster than none at K = 8
# on a packed batch, 7 % at K = 64; 1 MB the same as 4 MB, 16 MB 4 % slower.
_FWD_TILE_BYTES = 4 << 20


def _sample_tile(x: np.ndarray, B: int) -> int:
    """Samples per forward tile: about _FWD_TILE_BYTES of x."""
    per_sample = max(1, x.shape[0] * x.shape[1] * x.itemsize // max(1, B))
    return max(1, _FWD_TILE_BYTES // per_sample)


def _cost_inputs(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor):
    """(x, mu, w, classes per group G, per-task scratch rows) for :func:`_forward_all`
    and :func:`_local_cost_all`.

    With ``_PAD_MIN_C`` classes or more, x is copied to rows of ``_row_width(F)``
    on a 64-byte aligned base (a copy no bigger than the batch itself), and each
    task gets scratch for one class group's (mu, w) rows of that width, so the pass
    needs ``2 * G * K * width`` floats per thread rather than a padded copy of [C, K, F].
    With fewer classes the copies would cost more than they save: the kernels then
    read x, mu and w in place (scratch of width 0).
    """
    C, K, F = mu.shape
    G = _group_size(C, K)
    width = _row_width(F) if C >= _PAD_MIN_C else 0
    rows = torch.zeros((get_num_threads(), 2, G * K, width), dtype=x.dtype)  # 64-byte aligned
    xr = _rows(x, width) if width else _x_rows(x)
    return xr, _np(mu), _exp(theta), G, rows.numpy()


def _check_paths(offsets: np.ndarray, paths: np.ndarray) -> None:
    """The kernels index without bounds checks: reject paths outside the samples."""
    if not _paths_in_range(offsets, paths):
        raise ValueError("paths must hold 0 <= lo <= hi < T_b for every sample b, class and row")


def _hvd(step_pattern: str) -> bool:
    if step_pattern not in ("hv", "hvd"):
        raise ValueError(f"step_pattern must be 'hv' or 'hvd', got {step_pattern!r}")
    return step_pattern == "hvd"


def local_cost_numba(x, offsets, mu, theta):
    """D [B, C, K, Tmax] as :func:`dejavid.alignment.ref.local_cost_ref`; padding columns are 0."""
    xp, mun, w, G, rows = _cost_inputs(x, mu, theta)
    on = _np(offsets)
    B = on.shape[0] - 1
    C, K, _ = mu.shape
    tmax = int((on[1:] - on[:-1]).max())
    out = np.zeros((B, C, K, tmax), dtype=xp.dtype)
    _local_cost_all(xp, on, mun, w, G, _sample_tile(xp, B), rows, out)
    return torch.from_numpy(out)


# Forward in lanes (:func:`_forward_lanes`): classes per pass, and when it is used.  16
# float32 lanes are one 512-bit vector.  Measured (2-core AMD EPYC, 2026-12-06, batches of
# 32, fastest of 5, ms, scalar -> lanes; bench/bench_forward_shapes.py and the session's
# scratch runs, bench/RESULTS.md "Issue 29, round four"): K 128, T 427, 200 prototypes,
# F 1, band 0.1: 54 -> 29.5; K = T = 234: 66 -> 31; no band: 194 -> 114.  By features
# (K 128, T 427, 64 prototypes; K 100, T 100, 60; K 64, T 64, 51; K 15, T 15, 180):
# F 4: 94 -> 47, 14.0 -> 9.2, 4.6 -> 3.9, 1.21 -> 0.99; F 8: 105 -> 65, 16.2 -> 12.1,
# 5.05 -> 5.12, 1.26 -> 1.18; F 12: 115 -> 84, 17.9 -> 15.7, 5.9 -> 6.5, 1.36 -> 1.44;
# F 16: 5.6 -> 7.6 at K 64.  Past 8 features the scalar kernel's register blocks, which
# reuse each x row over four centroid rows, win on short series.  With lanes left
# empty: 6 prototypes 6.1 -> 8.5; 20 prototypes, K 72: 1.5 -> 2.0.  So: at most
# _LANE_MAX_F features and at most a quarter of the lanes empty.  Each thread holds a
# [K, Tmax, 16] grid, 16 times the scalar kernel's per class: above _LANE_MAX_BYTES (very
# long series) the scalar kernel runs instead.
_LANES = 16
_LANE_MAX_F = 8
_LANE_MAX_BYTES = 64 << 20


def _use_lanes(C: int, F: int, K: int = 1, tmax: int = 1, itemsize: int = 4) -> bool:
    """Whether :func:`align_forward_numba` takes :func:`_forward_lanes` for C classes
    (prototypes) of K steps and F features, samples of at most ``tmax`` steps."""
    blocks = -(-C // _LANES)
    return (F <= _LANE_MAX_F and C >= _LANES
            and 4 * (blocks * _LANES - C) <= blocks * _LANES
            and K * tmax * _LANES * itemsize <= _LANE_MAX_BYTES)


def _lane_blocks(t: torch.Tensor) -> np.ndarray:
    """[C, K, F] -> [P, K, F, L] with class p * L + l in lane l of block p, zero padded."""
    C, K, F = t.shape
    P = -(-C // _LANES)
    out = torch.zeros((P * _LANES, K, F), dtype=t.dtype)
    out[:C] = t.detach()
    return out.view(P, _LANES, K, F).permute(0, 2, 3, 1).contiguous().numpy()


def _forward_lanes_numba(x, offsets, mu, theta, hvd, band, open_ends=False):
    """:func:`align_forward_numba` through :func:`_forward_lanes`."""
    xn, on = _x_rows(x), _np(offsets)
    B = on.shape[0] - 1
    C, K, F = mu.shape
    if band is None:   # the whole grid: every row spans [0, T_b)
        rows = np.zeros((B, K, 2), dtype=np.int32)
        rows[:, :, 1] = (on[1:] - on[:-1] - 1)[:, None]
    else:
        rows = _np(band.to(torch.int32))
    dist = np.empty((B, C), dtype=xn.dtype)
    paths = np.empty((B, C, K, 2), dtype=np.int32)
    _forward_lanes(xn, on, _lane_blocks(mu), _lane_blocks(torch.exp(theta.detach())), C, rows,
                   get_num_threads(), hvd, bool(open_ends), dist, paths)
    return torch.from_numpy(dist), torch.from_numpy(paths)


def align_forward_numba(x, offsets, mu, theta, step_pattern, band=None, open_ends=False,
                        lanes=None):
    """Free-path alignment: (dist [B, C], paths [B, C, K, 2] int32); ``band`` [B, K, 2]
    int32 rows of :func:`dejavid.alignment.backend.band_rows`, or None; ``open_ends``: the
    first and last step of every sample cost 0 (docs/DESIGN.md section 3.3.2).  ``lanes``: take
    :func:`_forward_lanes` (True) or :func:`_forward_all` (False); None: as
    :func:`_use_lanes` says (tests compare the two)."""
    hvd = _hvd(step_pattern)
    C, K, F = mu.shape
    if lanes is None:
        lengths = offsets[1:] - offsets[:-1]
        tmax = int(lengths.max()) if lengths.numel() else 1
        lanes = _use_lanes(C, F, K, tmax, x.element_size())
    if lanes:
        return _forward_lanes_numba(x, offsets, mu, theta, hvd, band, open_ends)
    xp, mun, w, G, rows = _cost_inputs(x, mu, theta)
    on = _np(offsets)
    B = on.shape[0] - 1
    C, K, _ = mu.shape
    dist = np.empty((B, C), dtype=xp.dtype)
    paths = np.empty((B, C, K, 2), dtype=np.int32)
    bn = np.zeros((0, K, 2), dtype=np.int32) if band is None else _np(band.to(torch.int32))
    _forward_all(xp, on, mun, w, G, _sample_tile(xp, B), rows, hvd, bn, bool(open_ends),
                 dist, paths)
    return torch.from_numpy(dist), torch.from_numpy(paths)


# Path cost and gradients: samples per tile (their x stays in the shared L3 while a
# task walks all its rows) and centroid rows per chunk (a chunk's mu, w or gradient
# rows stay in L2 while the tile's samples go by).  Measured as above (one thread,
# CPU time): at K = 8 tiles of 0.25-4 MB and chunks of 128 KB-2 MB are within 5 % of
# each other, 16 MB tiles 1.2x slower; at K = 64 1 MB tiles are 1.2x slower than 4 MB.
# Cells are summed per row run, four sample steps per pass over F: the kernels then
# stream x from L2 at about 18 (cost) and 11 (gradients) G cells x F per second and
# thread, against 34 G for the forward's register-blocked local cost, whose x and
# rows are reused from L1.
_TILE_BYTES = 4 << 20
_CHUNK_BYTES = 512 << 10


def _blocking(xn: np.ndarray, B: int, F: int, arrays: int) -> tuple[int, int, int]:
    """(tasks, samples per tile, rows per chunk) for the path kernels; ``arrays``:
    [F]-rows a chunk keeps per centroid row (mu and w: 2; mu and the two gradients: 3)."""
    per_sample = max(1, xn.shape[0] * xn.shape[1] * xn.itemsize // max(1, B))
    tile = max(1, _TILE_BYTES // per_sample)
    chunk = max(1, _CHUNK_BYTES // (arrays * F * xn.itemsize))
    return get_num_threads(), tile, chunk


def path_cost_numba(x, offsets, mu, theta, paths):
    """Distance [B, C] along given paths with the current (mu, theta)."""
    xn, on, pn, mun = _x_rows(x), _np(offsets), _np(paths), _np(mu)
    _check_paths(on, pn)
    B = on.shape[0] - 1
    C, K, F = mun.shape
    dist = np.empty((B, C), dtype=xn.dtype)
    part = np.empty((B, C * K), dtype=xn.dtype)
    _path_cost_all(xn, on, mun, _exp(theta), pn, *_blocking(xn, B, F, 2), part, dist)
    return torch.from_numpy(dist)


def path_grads_numba(x, offsets, mu, theta, paths, grad, need_x):
    """(grad_x [N, F] or None, grad_mu [C, K, F], grad_theta [C, K, F]) along fixed paths."""
    xn, on, mun, pn = _x_rows(x), _np(offsets), _np(mu), _np(paths)
    _check_paths(on, pn)
    w = _exp(theta)
    g = _np(grad).astype(xn.dtype, copy=False)
    gmu = np.zeros_like(mun)
    gtheta = np.zeros_like(mun)
    _param_grads(xn, on, mun, w, pn, g, *_blocking(xn, on.shape[0] - 1, mun.shape[2], 3),
                 gmu, gtheta)
    gx = None
    if need_x:
        gx_np = np.zeros((xn.shape[0], mun.shape[2]), dtype=xn.dtype)
        _x_grads(xn, on, mun, w, pn, g, gx_np)
        gx = torch.from_numpy(gx_np)
    return gx, torch.from_numpy(gmu), torch.from_numpy(gtheta)


def dba_accumulate_numba(x, offsets, paths):
    """DBA sums for one centroid: paths [B, 1, K, 2] -> (sums [K, F], counts [K])."""
    xn, on, pn = _x_rows(x), _np(offsets), _np(paths)
    _check_paths(on, pn)
    K = pn.shape[2]
    sums = np.zeros((K, x.shape[1]), dtype=xn.dtype)
    counts = np.zeros(K, dtype=np.int64)
    _dba_all(xn, on, pn, sums, counts)
    return torch.from_numpy(sums), torch.from_numpy(counts.astype(xn.dtype))


BACKEND = Backend("numba", align_forward_numba, path_cost_numba, path_grads_numba,
                  dba_accumulate_numba)
