"""Public alignment op: one autograd.Function and the single backend dispatch point.

    dist, paths = align(x, offsets, mu, theta, step_pattern="hv")          # free path
    dist, _     = align(x, offsets, mu, theta, paths=fixed_paths)          # fixed path

Shapes are those of :mod:`dejavid.alignment.ref`.  ``dist`` is differentiable with
respect to ``x``, ``mu`` and ``theta``; the backward pass uses the path-fixed
gradients of docs/DESIGN.md section 4.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch

from . import ref as align_ref
from .backend import (BACKENDS, CUDA_BUILD_COMMAND, Backend, band_rows, check_backend_name,
                      check_band, check_step_pattern)

__all__ = ["align", "dba_accumulate", "add_end_steps", "get_backend", "check_inputs", "Backend",
           "BACKENDS", "CUDA_BUILD_COMMAND", "REF"]

REF = align_ref.BACKEND

_loaded: dict[str, Optional[Backend]] = {}
_why_not: dict[str, str] = {}   # backend name -> why it cannot be used (import error text)
_warned_cuda = False


def _load(name: str) -> Optional[Backend]:
    """Import an optional backend module once; None when it cannot be used here."""
    if name not in _loaded:
        try:
            # Imported on first use: numba's import alone takes a second, and a CPU-only
            # user never needs the CUDA module.  Both modules import without their
            # optional dependency and report it through available() / IMPORT_ERROR.
            if name == "numba":
                from . import numba as mod
            else:
                from . import cuda as mod
            _loaded[name] = mod.BACKEND if mod.available() else None
            if getattr(mod, "IMPORT_ERROR", None):
                _why_not[name] = mod.IMPORT_ERROR
        except ImportError as exc:
            _loaded[name] = None
            _why_not[name] = str(exc)
    return _loaded[name]


def _why(name: str) -> str:
    """' (import error: ...)' when the backend's module failed to import, else ''."""
    return f" (import error: {_why_not[name]})" if name in _why_not else ""


def get_backend(device: torch.device | str, name: str = "auto") -> Backend:
    """Pick the backend for tensors on ``device``.

    auto: CUDA kernels on a CUDA device (the reference with one warning when the
    extension is not built), numba on CPU (the reference when numba is missing).
    An explicitly named backend that cannot run raises ValueError.
    """
    global _warned_cuda
    check_backend_name(name)
    device = torch.device(device)
    if name == "ref":
        return REF
    if name == "auto":
        if device.type == "cuda":
            be = _load("cuda")
            if be is None and not _warned_cuda:
                _warned_cuda = True
                warnings.warn("dejavid CUDA kernels are not built or do not load"
                              f"{_why('cuda')}; using the slow pure-PyTorch reference on GPU. "
                              f"Build them with: {CUDA_BUILD_COMMAND}",
                              RuntimeWarning, stacklevel=2)
            return be or REF
        if device.type == "cpu":
            return _load("numba") or REF
        return REF
    want = {"numba": "cpu", "cuda": "cuda"}[name]
    if device.type != want:
        raise ValueError(f"backend {name!r} runs on {want} tensors, got a {device.type} tensor")
    be = _load(name)
    if be is None:
        hint = "pip install numba" if name == "numba" else CUDA_BUILD_COMMAND
        raise ValueError(f"backend {name!r} is not available here{_why(name)}; "
                         f"install it with: {hint}")
    return be


class _AlignFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mu, theta, offsets, paths, step_pattern, backend, band):
        if paths is None:
            dist, paths = backend.align_forward(x, offsets, mu, theta, step_pattern, band)
        else:
            dist = backend.path_cost(x, offsets, mu, theta, paths)
        ctx.save_for_backward(x, mu, theta, offsets, paths)
        ctx.backend = backend
        ctx.mark_non_differentiable(paths)
        return dist, paths

    @staticmethod
    def backward(ctx, grad_dist, _grad_paths):
        x, mu, theta, offsets, paths = ctx.saved_tensors
        need_x = ctx.needs_input_grad[0]
        gx, gmu, gtheta = ctx.backend.path_grads(x, offsets, mu, theta, paths,
                                                 grad_dist.contiguous(), need_x)
        return (gx if need_x else None, gmu if ctx.needs_input_grad[1] else None,
                gtheta if ctx.needs_input_grad[2] else None, None, None, None, None, None)


def check_inputs(x, offsets, mu, theta, paths=None):
    """Shape/dtype/device checks with messages that say what to fix."""
    if x.dim() != 2:
        raise ValueError(f"x must be [N, F] (samples concatenated in time), got shape {tuple(x.shape)}")
    if mu.dim() != 3 or theta.shape != mu.shape:
        raise ValueError(f"mu and theta must both be [C, K, F]; got {tuple(mu.shape)} and {tuple(theta.shape)}")
    if x.shape[1] != mu.shape[2]:
        raise ValueError(f"feature size of x ({x.shape[1]}) differs from the centroids' ({mu.shape[2]})")
    if not (x.dtype == mu.dtype == theta.dtype) or not x.is_floating_point():
        raise ValueError(f"x, mu, theta must share one float dtype; got {x.dtype}, {mu.dtype}, {theta.dtype}")
    if not (x.device == mu.device == theta.device):
        raise ValueError(f"x, mu, theta must be on one device; got {x.device}, {mu.device}, {theta.device}")
    if offsets.dim() != 1 or offsets.numel() < 2 or offsets.dtype != torch.int64:
        raise ValueError("offsets must be an int64 vector [B + 1] of cumulative sample lengths")
    lengths = offsets[1:] - offsets[:-1]
    if int(offsets[0]) != 0 or int(offsets[-1]) != x.shape[0] or bool((lengths < 1).any()):
        raise ValueError("offsets must start at 0, end at x.shape[0] and describe samples of length >= 1")
    if paths is not None:
        B, C, K = offsets.numel() - 1, mu.shape[0], mu.shape[1]
        if tuple(paths.shape) != (B, C, K, 2) or paths.dtype != torch.int32:
            raise ValueError(f"paths must be int32 [B, C, K, 2] = {(B, C, K, 2)}, got {paths.dtype} {tuple(paths.shape)}")


def align(x: torch.Tensor, offsets: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor,
          step_pattern: str = "hv", paths: Optional[torch.Tensor] = None,
          backend: str = "auto", band: Optional[float] = None,
          open_ends: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """DejaVid distance of every sample to every class centroid.

    x [N, F], offsets int64 [B + 1] (on CPU or x's device), mu/theta [C, K, F].
    Without ``paths`` the optimal path under ``step_pattern`` ('hv' or 'hvd') is
    computed, inside the warping ``band`` when one is given (a fraction, see
    :func:`dejavid.alignment.backend.band_rows`; None: no band); with ``paths``
    [B, C, K, 2] the distance is evaluated along them (fixed-path mode, ``band`` unused:
    the paths already lie wherever they were chosen).  Returns (dist [B, C], paths
    [B, C, K, 2] int32).

    ``open_ends``: every sample is matched in full to a stretch of each centroid, which
    may begin and end at any centroid step (docs/DESIGN.md section 3.3.2).  The sample is
    then aligned with one end step added before and after it (:func:`add_end_steps`),
    whose cells cost nothing, and the returned paths are those of the longer samples
    (T_b + 2 steps; pass them back as they are).  Not with a ``band``.
    """
    check_step_pattern(step_pattern)
    check_band(band)
    offsets = offsets.to(device=x.device, dtype=torch.int64)
    check_inputs(x, offsets, mu, theta, None if open_ends else paths)
    be = get_backend(x.device, backend)
    if open_ends:
        if band is not None:
            raise ValueError("open_ends cannot be combined with a warping band (the band "
                             "ties each centroid step to a place in the sample); set band "
                             "to none")
        return _align_open(x, offsets, mu, theta, step_pattern, paths, be)
    rows = None
    if paths is None and band is not None:
        rows = band_rows(offsets[1:] - offsets[:-1], mu.shape[1], band).to(x.device)
    return _AlignFunction.apply(x, mu, theta, offsets, paths, step_pattern, be, rows)


def add_end_steps(x: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample of x [N, F] (offsets [B + 1]) with one zero step added before and one
    after it: (x [N + 2B, F], offsets [B + 1]).  Differentiable with respect to x."""
    B = offsets.numel() - 1
    lengths = (offsets[1:] - offsets[:-1]).to(x.device)
    padded = offsets + 2 * torch.arange(B + 1, dtype=offsets.dtype, device=offsets.device)
    starts = (padded[:-1] + 1).to(x.device)                                      # [B]
    rows = torch.repeat_interleave(starts - offsets[:-1].to(x.device), lengths) \
        + torch.arange(x.shape[0], device=x.device)
    out = x.new_zeros(x.shape[0] + 2 * B, x.shape[1])
    out = out.index_copy(0, rows, x)
    return out, padded


def end_step_cells(paths: torch.Tensor, padded_offsets: torch.Tensor) -> torch.Tensor:
    """[B, C, K] how many of the two end steps (:func:`add_end_steps`) each centroid
    step's range holds on ``paths`` [B, C, K, 2] of the padded samples: 0, 1 or 2."""
    last = (padded_offsets[1:] - padded_offsets[:-1] - 1).to(paths.device).view(-1, 1, 1)
    return (paths[..., 0] == 0).to(torch.int64) + (paths[..., 1] == last).to(torch.int64)


def _align_open(x, offsets, mu, theta, step_pattern, paths, be):
    """:func:`align` with open ends.  The free path comes from the backend's forward with
    the end steps' cells at cost 0.  Its distance is returned as it is when no gradient is
    wanted; otherwise (and along given paths) the distance is the backend's path cost on
    the padded samples less the end steps' cells, sum_f w |mu - 0| for each centroid step
    whose range holds one (computed here, so each backend's path cost and gradients serve
    unchanged)."""
    xp, padded = add_end_steps(x, offsets)
    if paths is None:
        with torch.no_grad():
            dist, paths = be.align_forward(xp.detach(), padded, mu.detach(), theta.detach(),
                                           step_pattern, None, open_ends=True)
        wants_grad = torch.is_grad_enabled() and (x.requires_grad or mu.requires_grad
                                                  or theta.requires_grad)
        if not wants_grad:
            return dist, paths
    else:
        check_inputs(xp, padded, mu, theta, paths)
    dist, paths = _AlignFunction.apply(xp, mu, theta, padded, paths, step_pattern, be, None)
    ends = end_step_cells(paths, padded).to(device=mu.device, dtype=mu.dtype)   # [B, C, K]
    end_cost = (theta.exp() * mu.abs()).sum(-1)                                  # [C, K]
    return dist - (ends * end_cost.unsqueeze(0)).sum(-1), paths


def dba_accumulate(x: torch.Tensor, offsets: torch.Tensor, paths: torch.Tensor,
                   backend: str = "auto", open_ends: bool = False):
    """Sums and counts of sample steps matched to each centroid step (DBA update).
    ``open_ends``: ``paths`` come from :func:`align` with open ends (on the padded samples);
    the end steps are left out, so a centroid step matched only to them has count 0."""
    offsets = offsets.to(x.device)
    be = get_backend(x.device, backend)
    if not open_ends:
        return be.dba_accumulate(x, offsets, paths)
    xp, padded = add_end_steps(x, offsets)
    sums, counts = be.dba_accumulate(xp, padded, paths)   # the end steps add zeros to sums
    ends = end_step_cells(paths, padded).sum(0)[0].to(device=counts.device, dtype=counts.dtype)
    return sums, counts - ends
