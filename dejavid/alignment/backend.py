"""Types shared by the alignment dispatch (:mod:`dejavid.alignment.op`) and the backends below it.

The backends (``ref``, ``numba``, ``cuda`` beside this module) import :class:`Backend`
from here and the dispatch imports the backends, so dependencies point one way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

BACKENDS = ("auto", "ref", "numba", "cuda")
STEP_PATTERNS = ("hv", "hvd")
CUDA_BUILD_COMMAND = "pip install --no-build-isolation ./kernel_setup"


@dataclass(frozen=True)
class Backend:
    """The four functions every backend provides (signatures as in :mod:`dejavid.alignment.ref`)."""
    name: str
    # (x, offsets, mu, theta, step_pattern, band=None, open_ends=False) -> (dist, paths);
    # open_ends: the first and the last step of every sample cost nothing (the end steps
    # that dejavid.alignment.op.align adds for open ends, docs/DESIGN.md section 3.3.2)
    align_forward: Callable
    path_cost: Callable       # (x, offsets, mu, theta, paths) -> dist
    path_grads: Callable      # (x, offsets, mu, theta, paths, grad, need_x) -> (gx, gmu, gtheta)
    dba_accumulate: Callable  # (x, offsets, paths[B,1,K,2]) -> (sums [K,F], counts [K])


def check_step_pattern(step_pattern: str) -> str:
    """``step_pattern`` if it is one of :data:`STEP_PATTERNS`, else ValueError."""
    if step_pattern not in STEP_PATTERNS:
        raise ValueError(f"step_pattern must be one of {STEP_PATTERNS}, got {step_pattern!r}")
    return step_pattern


def check_band(band):
    """``band`` (None, or a fraction > 0 of the diagonal's span) if valid, else ValueError."""
    if band is None:
        return None
    if isinstance(band, bool) or not isinstance(band, (int, float)) or not band > 0:
        raise ValueError(f"band must be none or a fraction > 0 (e.g. 0.1), got {band!r}")
    return float(band)


# Slack on the band's edges, so that a cell exactly on an edge (|i/(K-1) - j/(T-1)| = r,
# e.g. r = 0.1, K = T = 11) is inside whatever the rounding of the products.
_BAND_SLACK = 1e-9


def band_rows(lengths, K: int, band):
    """Sakoe-Chiba-style band of each sample's (K, T_b) grid: int32 [B, K, 2], the inclusive
    (lo, hi) columns row i may use; None when ``band`` is None (every cell allowed).

    Cell (i, j) is inside when |i / (K - 1) - j / (T_b - 1)| <= band (a fraction of the
    diagonal's span, so 0.1 on equal lengths is the classic 10 % window |i - j| <= 0.1 (T - 1);
    K = 1 or T_b = 1 allow the whole row).  Each row's hi is then raised to the next row's
    lo, so consecutive rows share a column and an 'hv' path from (0, 0) to (K-1, T_b-1)
    always exists inside; band >= 1 allows every cell.  Computed once here, in float64 on
    the host, and handed as integers to every backend, so all agree on the cells.
    ``lengths``: [B] sample lengths (a tensor on any device)."""
    band = check_band(band)
    if band is None:
        return None
    T = lengths.detach().to("cpu", torch.float64).view(-1, 1)               # [B, 1]
    i = torch.arange(K, dtype=torch.float64).view(1, -1)                      # [1, K]
    centre = i / max(K - 1, 1) * (T - 1)                                      # [B, K]
    lo = torch.ceil(centre - band * (T - 1) - _BAND_SLACK).clamp(min=0)
    hi = torch.minimum(torch.floor(centre + band * (T - 1) + _BAND_SLACK), T - 1)
    if K == 1:
        lo, hi = torch.zeros_like(lo), (T - 1).expand_as(hi).clone()
    hi[:, :-1] = torch.maximum(hi[:, :-1], lo[:, 1:])
    return torch.stack([lo, hi], -1).to(torch.int32).contiguous()


def check_backend_name(name: str) -> str:
    """``name`` if it is one of :data:`BACKENDS`, else ValueError listing them."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return name


# Rows of a packed batch start on 64-byte cache lines: from F = ROW_PAD_MIN_F on, a
# row is padded with zeros to whole lines of ROW_LINE values (F = 1459 -> 1472).  The
# numba kernels read such a batch in place with whole-line loads (dejavid/alignment/numba.py
# measured the layout); made here, in the one copy that packs the batch, it costs no
# second copy.  Below ROW_PAD_MIN_F, up to 15 padding columns would cost more than
# they save.
ROW_LINE = 16
ROW_PAD_MIN_F = 128


def packed_row_width(F: int) -> int:
    """Row length of a packed batch's storage: F rounded up to whole cache lines
    (64 bytes of float32) when F >= ROW_PAD_MIN_F, else F."""
    if F < ROW_PAD_MIN_F or F % ROW_LINE == 0:
        return F
    return F + (-F) % ROW_LINE
