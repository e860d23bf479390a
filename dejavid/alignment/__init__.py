"""The alignment layer: the differentiable DTW-style distance of variable-length series to
centroid series (docs/DESIGN.md sections 3-4), and the DBA accumulation on the same paths.

    op        the public op (one autograd.Function) and the one place a backend is picked
    backend   names, step patterns and types shared by the op and the backends
    ref       pure-PyTorch reference (tests, fallback)
    numba     fused numba CPU kernels (default off the GPU)
    cuda      thin op over the CUDA kernels of kernel_setup/ (default on the GPU)

It imports only the shared leaves; every layer above uses it through :func:`align`.
"""
from __future__ import annotations

from .. import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".op": ["align", "dba_accumulate", "get_backend", "check_inputs"],
    ".backend": ["Backend", "BACKENDS", "STEP_PATTERNS", "check_step_pattern", "check_backend_name"],
})
