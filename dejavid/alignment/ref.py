"""Pure-PyTorch reference of the DejaVid alignment (docs/DESIGN.md sections 3-4).

Every fast backend (numba, CUDA) implements the same four functions with the
same signatures and is tested against this module.  Shapes:

    x        [N, F]   all samples of a batch concatenated along time
    offsets  [B + 1]  int64, sample b is x[offsets[b]:offsets[b + 1]]
    mu       [C, K, F] centroids
    theta    [C, K, F] log-weights, w = exp(theta)
    paths    [B, C, K, 2] int32, row i of class c matched to samples steps
             paths[b, c, i, 0] .. paths[b, c, i, 1] (inclusive)
    dist     [B, C]

Runs on any device torch runs on.  It is written for clarity and bounded
memory, not speed.
"""
from __future__ import annotations

import torch

from .backend import STEP_PATTERNS, Backend, band_rows

# Upper bound on elements of a temporary local-cost block.
_BLOCK_ELEMS = 1 << 24


def _lengths(offsets: torch.Tensor) -> torch.Tensor:
    return offsets[1:] - offsets[:-1]


def _padded(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """[N, F] packed -> [B, Tmax, F] zero padded (padding is never read back)."""
    lengths = _lengths(offsets).tolist()
    return torch.nn.utils.rnn.pad_sequence(list(torch.split(x, lengths)), batch_first=True)


def local_cost_ref(x: torch.Tensor, offsets: torch.Tensor, mu: torch.Tensor,
                   theta: torch.Tensor) -> torch.Tensor:
    """D[b, c, i, j] = sum_f w[c,i,f] |mu[c,i,f] - x_b[j,f]|  ->  [B, C, K, Tmax].

    Entries with j >= T_b are computed from zero padding and must be ignored.
    """
    xp = _padded(x, offsets)  # [B, Tmax, F]
    B, Tmax, F = xp.shape
    C, K, _ = mu.shape
    w = theta.exp()
    out = x.new_empty(B, C, K, Tmax)
    rows = C * K
    row_chunk = max(1, _BLOCK_ELEMS // max(1, Tmax * F))
    mu_r = mu.reshape(rows, 1, F)
    w_r = w.reshape(rows, 1, F)
    for b in range(B):
        xb = xp[b].unsqueeze(0)  # [1, Tmax, F]
        ob = out[b].view(rows, Tmax)
        for r0 in range(0, rows, row_chunk):
            r1 = min(rows, r0 + row_chunk)
            ob[r0:r1] = (w_r[r0:r1] * (mu_r[r0:r1] - xb).abs()).sum(-1)
    return out


def accumulate_ref(D: torch.Tensor, step_pattern: str) -> torch.Tensor:
    """Accumulated cost A [..., K, T] of a local cost D [..., K, T].

    Computed along anti-diagonals; vectorised over leading dims.  Cells that lie
    in padding (j >= T_b) hold garbage but are never predecessors of real cells
    because every step decreases i or j.
    """
    if step_pattern not in STEP_PATTERNS:
        raise ValueError(f"step_pattern must be one of {STEP_PATTERNS}, got {step_pattern!r}")
    *lead, K, T = D.shape
    # Padded by one row/column of +inf at the top/left.
    Ap = torch.full((*lead, K + 1, T + 1), float("inf"), dtype=D.dtype, device=D.device)
    Ap[..., 1, 1] = D[..., 0, 0]
    for d in range(1, K + T - 1):
        i0, i1 = max(0, d - T + 1), min(d, K - 1)
        ii = torch.arange(i0, i1 + 1, device=D.device)
        jj = d - ii
        up = Ap[..., ii, jj + 1]      # A[i-1, j]
        left = Ap[..., ii + 1, jj]    # A[i, j-1]
        best = torch.minimum(up, left)
        if step_pattern == "hvd":
            best = torch.minimum(best, Ap[..., ii, jj])  # A[i-1, j-1]
        Ap[..., ii + 1, jj + 1] = D[..., ii, jj] + best
    return Ap[..., 1:, 1:]


def backtrack_ref(A: torch.Tensor, lengths: torch.Tensor, step_pattern: str) -> torch.Tensor:
    """Paths [B, C, K, 2] (int32) from accumulated costs A [B, C, K, Tmax].

    Tie rules (docs/DESIGN.md section 3):
      hv : up (i-1, j) only if A[i-1, j] < A[i, j-1]; else left.
      hvd: up if a < b and a < g; elif b < g left; else diagonal.
    """
    B, C, K, Tmax = A.shape
    dev = A.device
    inf = float("inf")
    Ap = torch.full((B, C, K + 1, Tmax + 1), inf, dtype=A.dtype, device=dev)
    Ap[:, :, 1:, 1:] = A
    bb = torch.arange(B, device=dev).view(B, 1).expand(B, C)
    cc = torch.arange(C, device=dev).view(1, C).expand(B, C)
    i = torch.full((B, C), K - 1, dtype=torch.long, device=dev)
    j = (lengths.to(dev).long() - 1).view(B, 1).expand(B, C).clone()
    paths = torch.empty((B, C, K, 2), dtype=torch.int32, device=dev)
    paths[:, :, K - 1, 1] = j.to(torch.int32)
    for _ in range(K + Tmax):
        paths[bb, cc, i, 0] = j.to(torch.int32)  # lowest j seen so far on row i
        active = (i > 0) | (j > 0)
        if not bool(active.any()):
            break
        a = Ap[bb, cc, i, j + 1]       # A[i-1, j]  (+inf when i == 0)
        b_ = Ap[bb, cc, i + 1, j]      # A[i, j-1]  (+inf when j == 0)
        if step_pattern == "hv":
            up = (a < b_) | (j == 0)
            up = up & (i > 0)
            di = up.long()
            dj = (~up).long()
        else:
            g = Ap[bb, cc, i, j]       # A[i-1, j-1]
            up = (a < b_) & (a < g)
            left = ~up & (b_ < g)
            diag = ~up & ~left
            # Borders: only one move is possible there.
            up = torch.where(j == 0, torch.ones_like(up), up)
            left = torch.where(j == 0, torch.zeros_like(left), left)
            diag = torch.where(j == 0, torch.zeros_like(diag), diag)
            left = torch.where(i == 0, torch.ones_like(left), left)
            up = torch.where(i == 0, torch.zeros_like(up), up)
            diag = torch.where(i == 0, torch.zeros_like(diag), diag)
            di = (up | diag).long()
            dj = (left | diag).long()
        di = di * active.long()
        dj = dj * active.long()
        new_i = i - di
        new_j = j - dj
        moved_row = di.bool()
        # Entering a new row: its highest j is where we arrive.
        paths[bb[moved_row], cc[moved_row], new_i[moved_row], 1] = new_j[moved_row].to(torch.int32)
        i, j = new_i, new_j
    return paths


def outside_band(rows: torch.Tensor, Tmax: int) -> torch.Tensor:
    """[B, 1, K, Tmax] bool, True on the cells a band ``rows`` [B, K, 2] (lo, hi) excludes."""
    j = torch.arange(Tmax, device=rows.device).view(1, 1, Tmax)
    lo, hi = rows[..., 0:1].long(), rows[..., 1:2].long()                # [B, K, 1]
    return ((j < lo) | (j > hi)).unsqueeze(1)


def align_forward_ref(x: torch.Tensor, offsets: torch.Tensor, mu: torch.Tensor,
                      theta: torch.Tensor, step_pattern: str,
                      band=None, open_ends: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Free-path alignment: (dist [B, C] = A[K-1, T_b-1], paths [B, C, K, 2]).

    ``band`` (:func:`dejavid.alignment.backend.band_rows`, [B, K, 2] or None): cells outside
    get local cost +inf, so no path crosses them; None changes nothing.  ``open_ends``:
    the cells of each sample's first and last step cost 0 (docs/DESIGN.md section 3.3.2)."""
    lengths = _lengths(offsets)
    D = local_cost_ref(x, offsets, mu, theta)
    if band is not None:
        D.masked_fill_(outside_band(band.to(D.device), D.shape[-1]), float("inf"))
    if open_ends:
        D[:, :, :, 0] = 0
        D[torch.arange(D.shape[0], device=D.device), :, :, (lengths - 1).to(D.device)] = 0
    A = accumulate_ref(D, step_pattern)
    B, C = A.shape[:2]
    last = (lengths - 1).to(A.device).view(B, 1, 1).expand(B, C, 1)
    dist = A[:, :, -1, :].gather(2, last).squeeze(-1)  # [B, C]
    paths = backtrack_ref(A, lengths, step_pattern)
    return dist, paths


def _path_cells(offsets: torch.Tensor, paths: torch.Tensor):
    """Flat cell list of all paths: (pair index b*C+c, row index c*K+i, x row)."""
    B, C, K, _ = paths.shape
    dev = paths.device
    lo = paths[..., 0].long()
    n = (paths[..., 1].long() - lo + 1).reshape(-1)  # [B*C*K]
    seg = torch.arange(B * C * K, device=dev).repeat_interleave(n)
    start = torch.cumsum(n, 0) - n
    within = torch.arange(int(n.sum()), device=dev) - start.repeat_interleave(n)
    b = seg // (C * K)
    ci = seg % (C * K)
    pair = seg // K
    xrow = offsets.to(dev)[b] + lo.reshape(-1)[seg] + within
    return pair, ci, xrow


def _cell_chunks(ncells: int, F: int):
    step = max(1, _BLOCK_ELEMS // max(1, F))
    for s in range(0, ncells, step):
        yield slice(s, min(ncells, s + step))


def path_cost_ref(x: torch.Tensor, offsets: torch.Tensor, mu: torch.Tensor,
                  theta: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
    """Distance along given paths with the current (mu, theta): [B, C]."""
    B, C, K, _ = paths.shape
    F = mu.shape[-1]
    pair, ci, xrow = _path_cells(offsets, paths.to(x.device))
    mu_r = mu.reshape(C * K, F)
    w_r = theta.exp().reshape(C * K, F)
    dist = x.new_zeros(B * C)
    for s in _cell_chunks(pair.numel(), F):
        cost = (w_r[ci[s]] * (mu_r[ci[s]] - x[xrow[s]]).abs()).sum(-1)
        dist.index_add_(0, pair[s], cost)
    return dist.view(B, C)


def path_grads_ref(x: torch.Tensor, offsets: torch.Tensor, mu: torch.Tensor,
                   theta: torch.Tensor, paths: torch.Tensor, grad: torch.Tensor,
                   need_x: bool):
    """Gradients of sum_{b,c} grad[b,c] * d_c(x_b) along fixed paths.

    Returns (grad_x [N, F] or None, grad_mu [C, K, F], grad_theta [C, K, F]).
    """
    B, C, K, _ = paths.shape
    F = mu.shape[-1]
    pair, ci, xrow = _path_cells(offsets, paths.to(x.device))
    mu_r = mu.reshape(C * K, F)
    w_r = theta.exp().reshape(C * K, F)
    g = grad.reshape(B * C).to(x.dtype)
    g_mu = torch.zeros_like(mu_r)
    g_theta = torch.zeros_like(mu_r)
    g_x = torch.zeros_like(x) if need_x else None
    for s in _cell_chunks(pair.numel(), F):
        diff = mu_r[ci[s]] - x[xrow[s]]              # [cells, F]
        gw = g[pair[s]].unsqueeze(1) * w_r[ci[s]]   # [cells, F]
        g_theta.index_add_(0, ci[s], gw * diff.abs())
        sgn = gw * diff.sign()
        g_mu.index_add_(0, ci[s], sgn)
        if need_x:
            g_x.index_add_(0, xrow[s], -sgn)
    return g_x, g_mu.view(C, K, F), g_theta.view(C, K, F)


def dba_accumulate_ref(x: torch.Tensor, offsets: torch.Tensor, paths: torch.Tensor):
    """DBA sums for one centroid: paths [B, 1, K, 2] -> (sums [K, F], counts [K])."""
    B, _, K, _ = paths.shape
    F = x.shape[-1]
    pair, ci, xrow = _path_cells(offsets, paths.to(x.device))
    sums = x.new_zeros(K, F).index_add_(0, ci, x[xrow])
    counts = torch.bincount(ci, minlength=K).to(x.dtype)
    return sums, counts


BACKEND = Backend("ref", align_forward_ref, path_cost_ref, path_grads_ref, dba_accumulate_ref)
