"""CUDA backend of the DejaVid alignment: thin Python op over the kernels in kernel_setup/.

Same four functions, signatures, dtypes and tie rules as :mod:`dejavid.alignment.ref`:

    x        [N, F]   all samples of a batch concatenated along time
    offsets  [B + 1]  int64, on x's device
    mu/theta [C, K, F]
    paths    [B, C, K, 2] int32, inclusive (lo, hi) sample steps per centroid row
    dist     [B, C]

This module allocates outputs and scratch and calls the compiled extension
``dejavid_kernels`` (built by ``pip install --no-build-isolation ./kernel_setup``),
whose C++ binding checks devices, dtypes, shapes and contiguity.  float32 and
float64 are supported (float64 for gradcheck); other dtypes raise ValueError.
Offsets are validated by :func:`dejavid.alignment.op.check_inputs`; paths given to the
fixed-path functions are validated here.

The free-path forward computes the local cost of every centroid row against
every sample step, ``[C, K, N]``, in chunks of whole samples of at most
``COST_BUDGET`` elements, then runs the dynamic programme in place over it.
Nothing of size ``[B, C, K, F]`` is ever allocated, and no kernel uses atomics,
so every result is bitwise reproducible.
"""
from __future__ import annotations

import torch

from .backend import Backend

try:
    import dejavid_kernels as _C
    IMPORT_ERROR = None
except ImportError as exc:  # not built (or built for another torch): dispatch falls back
    _C = None
    IMPORT_ERROR = str(exc)  # e.g. an undefined symbol after a torch upgrade: rebuild

# Elements of the local-cost scratch of one chunk (float32: 512 MiB).
COST_BUDGET = 1 << 27
_DTYPES = (torch.float32, torch.float64)


def available() -> bool:
    """True when the extension is built and a CUDA device is present."""
    return _C is not None and torch.cuda.is_available()


def _check_dtype(x: torch.Tensor) -> None:
    if x.dtype not in _DTYPES:
        raise ValueError(f"the CUDA kernels support float32 and float64, got {x.dtype}; "
                         "convert the inputs (e.g. .float()) first")


def _weights(theta: torch.Tensor) -> torch.Tensor:
    return theta.detach().exp().contiguous()


def _c(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous()


def _check_paths(offsets: torch.Tensor, paths: torch.Tensor) -> None:
    """Reject paths outside their samples (the kernels also clip, so never read out of range)."""
    lengths = (offsets[1:] - offsets[:-1]).view(-1, 1, 1)  # [B, 1, 1]
    lo, hi = paths[..., 0], paths[..., 1]
    if bool(((lo < 0) | (hi < lo) | (hi >= lengths)).any()):
        raise ValueError("paths must hold 0 <= lo <= hi < T_b for every sample b, class and row")


def _chunks(offsets: torch.Tensor, N: int, rows: int, budget: int) -> list[tuple[int, int, int]]:
    """Sample ranges (b0, b1, columns) whose local cost [rows, columns] fits ``budget``.

    A single sample longer than the budget still gets a chunk of its own.  Reads
    the offsets back to the host only when one chunk is not enough.
    """
    B = offsets.numel() - 1
    if rows * N <= budget:
        return [(0, B, N)]
    cap = max(1, budget // rows)
    offs = offsets.tolist()
    out, b0 = [], 0
    while b0 < B:
        b1 = b0 + 1
        while b1 < B and offs[b1 + 1] - offs[b0] <= cap:
            b1 += 1
        out.append((b0, b1, offs[b1] - offs[b0]))
        b0 = b1
    return out


def _band_mask(band, offsets, b0, b1):
    """[K, columns] bool, True where the band rows ``band`` [B, K, 2] exclude a column of
    samples b0 .. b1 - 1 (the packed columns of one chunk's local cost)."""
    lengths = offsets[b0 + 1:b1 + 1] - offsets[b0:b1]
    b = torch.repeat_interleave(torch.arange(b0, b1, device=band.device), lengths)  # [cols]
    j = torch.arange(b.numel(), device=band.device) - (offsets[b] - offsets[b0])
    lo, hi = band[b, :, 0].t().long(), band[b, :, 1].t().long()                 # [K, cols]
    return (j < lo) | (j > hi)


def align_forward_cuda(x, offsets, mu, theta, step_pattern, band=None, open_ends=False):
    """Free-path alignment: (dist [B, C], paths [B, C, K, 2] int32).

    ``band`` [B, K, 2] int32 (:func:`dejavid.alignment.backend.band_rows`) or None: the local
    cost of the cells outside is set to +inf on the device before the dynamic programme,
    whose kernels then take those cells for what they are (no path crosses them).
    ``open_ends``: the local cost of each sample's first and last column is set to 0 the
    same way (docs/DESIGN.md section 3.3.2)."""
    if step_pattern not in ("hv", "hvd"):
        raise ValueError(f"step_pattern must be 'hv' or 'hvd', got {step_pattern!r}")
    _check_dtype(x)
    x, offsets, mu, w = _c(x), _c(offsets), _c(mu), _weights(theta)
    B = offsets.numel() - 1
    C, K, _ = mu.shape
    dist = x.new_empty(B, C)
    paths = torch.empty(B, C, K, 2, dtype=torch.int32, device=x.device)
    chunks = _chunks(offsets, x.shape[0], C * K, COST_BUDGET)
    scratch = x.new_empty(C * K * max(cols for _, _, cols in chunks))
    col = 0
    for b0, b1, cols in chunks:
        cost = scratch[:C * K * cols].view(C, K, cols)
        _C.local_cost(x[col:col + cols], mu, w, cost)
        if band is not None:
            cost.masked_fill_(_band_mask(band.to(x.device), offsets, b0, b1)[None], float("inf"))
        if open_ends:
            first = offsets[b0:b1] - offsets[b0]
            cost[:, :, first] = 0
            cost[:, :, offsets[b0 + 1:b1 + 1] - offsets[b0] - 1] = 0
        _C.dtw(cost, offsets, b0, b1 - b0, step_pattern == "hvd", dist, paths)
        col += cols
    return dist, paths


def local_cost_packed_cuda(x, mu, w):
    """The local-cost stage alone: [C, K, N] for all N sample steps (w = exp(theta))."""
    _check_dtype(x)
    x, mu, w = _c(x), _c(mu), _c(w)
    out = x.new_empty(mu.shape[0], mu.shape[1], x.shape[0])
    _C.local_cost(x, mu, w, out)
    return out


def local_cost_cuda(x, offsets, mu, theta):
    """D [B, C, K, Tmax] as :func:`dejavid.alignment.ref.local_cost_ref`; padding columns are 0."""
    packed = local_cost_packed_cuda(x, mu, _weights(theta))  # [C, K, N]
    lengths = offsets[1:] - offsets[:-1]
    B, N = lengths.numel(), x.shape[0]
    b = torch.repeat_interleave(torch.arange(B, device=x.device), lengths)  # [N]
    j = torch.arange(N, device=x.device) - offsets[:-1][b]
    out = x.new_zeros(B, int(lengths.max()), *packed.shape[:2])  # [B, Tmax, C, K]
    out[b, j] = packed.permute(2, 0, 1)
    return out.permute(0, 2, 3, 1)


def path_cost_cuda(x, offsets, mu, theta, paths):
    """Distance [B, C] along given paths with the current (mu, theta)."""
    _check_dtype(x)
    x, offsets, mu, w, paths = _c(x), _c(offsets), _c(mu), _weights(theta), _c(paths)
    _check_paths(offsets, paths)
    B, C, K, _ = paths.shape
    dist = x.new_empty(B, C)
    _C.path_cost(x, offsets, mu, w, paths, x.new_empty(B, C, K), dist)
    return dist


def path_grads_cuda(x, offsets, mu, theta, paths, grad, need_x):
    """(grad_x [N, F] or None, grad_mu [C, K, F], grad_theta [C, K, F]) along fixed paths."""
    _check_dtype(x)
    x, offsets, mu, w, paths = _c(x), _c(offsets), _c(mu), _weights(theta), _c(paths)
    _check_paths(offsets, paths)
    grad = grad.detach().to(x.dtype).contiguous()
    gmu = torch.empty_like(mu)
    gtheta = torch.empty_like(mu)
    gx = torch.empty_like(x) if need_x else None
    _C.path_grads(x, offsets, mu, w, paths, grad, gmu, gtheta, gx)
    return gx, gmu, gtheta


def dba_accumulate_cuda(x, offsets, paths):
    """DBA sums for one centroid: paths [B, 1, K, 2] -> (sums [K, F], counts [K])."""
    _check_dtype(x)
    x, offsets, paths = _c(x), _c(offsets), _c(paths)
    _check_paths(offsets, paths)
    K = paths.shape[2]
    sums = x.new_empty(K, x.shape[1])
    counts = x.new_empty(K)
    _C.dba(x, offsets, paths, sums, counts)
    return sums, counts


BACKEND = Backend("cuda", align_forward_cuda, path_cost_cuda, path_grads_cuda,
                  dba_accumulate_cuda)
