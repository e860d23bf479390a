"""Types shared by the alignment dispatch (:mod:`dejavid.alignment`) and the backends below it.

The backends (``align_ref``, ``align_numba``, ``align_cuda``) import :class:`Backend`
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
    """The four functions every backend provides (signatures as in align_ref)."""
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
