"""Types shared by the alignment dispatch (:mod:`dejavid.alignment.op`) and the backends below it.

The backends (``ref``, ``numba``, ``cuda`` beside this module) import :class:`Backend`
from here and the dispatch imports the backends, so dependencies point one way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

BACKENDS = ("auto", "ref", "numba", "cuda")
STEP_PATTERNS = ("hv", "hvd")
CUDA_BUILD_COMMAND = "pip install --no-build-isolation ./kernel_setup"


@dataclass(frozen=True)
class Backend:
    """The four functions every backend provides (signatures as in :mod:`dejavid.alignment.ref`)."""
    name: str
    align_forward: Callable   # (x, offsets, mu, theta, step_pattern) -> (dist, paths)
    path_cost: Callable       # (x, offsets, mu, theta, paths) -> dist
    path_grads: Callable      # (x, offsets, mu, theta, paths, grad, need_x) -> (gx, gmu, gtheta)
    dba_accumulate: Callable  # (x, offsets, paths[B,1,K,2]) -> (sums [K,F], counts [K])


def check_step_pattern(step_pattern: str) -> str:
    """``step_pattern`` if it is one of :data:`STEP_PATTERNS`, else ValueError."""
    if step_pattern not in STEP_PATTERNS:
        raise ValueError(f"step_pattern must be one of {STEP_PATTERNS}, got {step_pattern!r}")
    return step_pattern


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
