"""Batch assembly from a split held as one array of rows (docs/DESIGN.md section 1.5).

A split in the feature store, or held in RAM (``in_memory: true``), is one
``[n_steps, F]`` array with each video's first row and length.  A batch is then one
gather of its videos' rows into the packed layout of :func:`dejavid.data.dataset.collate_packed`
(zero-padded rows of ``packed_row_width(F)`` floats), done by a numba kernel that
also converts float16 / bfloat16 storage to float32 and standardises, in the same
float32 operations as the per-video path (``(x - mean) / std``), so both give
bitwise-equal batches (``tests/test_packing.py``).  The per-video path copied each
video with ``Tensor.copy_`` into the strided batch at about 3 GB/s; the kernel moves
the rows with both cores (bench/RESULTS.md, "Feature store: batch gather").
"""
from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..alignment.backend import packed_row_width
from .standardize import apply as standardize_apply
from .store import from_store_dtype

KINDS = ("float32", "float16", "bfloat16")


def offsets_of(lengths: np.ndarray) -> np.ndarray:
    """[n + 1] int64: 0, then the running sum of ``lengths`` (video b is rows
    offsets[b] .. offsets[b + 1])."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def padded_rows(N: int, F: int, dtype=torch.float32, device=None, zero: bool = True) -> torch.Tensor:
    """An empty 64-byte aligned [N, packed_row_width(F)] tensor (torch aligns CPU
    allocations to 64 bytes, CUDA ones to more) whose columns beyond F are zero
    (unless ``zero`` is False: the caller writes them); a batch is its [:, :F] view."""
    full = torch.empty(N, packed_row_width(F), dtype=dtype, device=device)
    if zero:
        full[:, F:].zero_()
    return full


@dataclass(frozen=True)
class RowSource:
    """Rows of one split: ``data`` [n_steps, F] (float32, or the uint16 bits of
    float16 / bfloat16), and each video's first row and length."""
    data: np.ndarray
    kind: str
    starts: np.ndarray
    lengths: np.ndarray

    @classmethod
    def from_tensors(cls, tensors) -> "RowSource":
        """float32 rows of a list of [T, F] tensors, concatenated (one copy)."""
        lengths = np.array([t.shape[0] for t in tensors], dtype=np.int64)
        data = torch.cat([t.detach().to("cpu", torch.float32) for t in tensors]).numpy()
        return cls(data, "float32", offsets_of(lengths)[:-1], lengths)

    def video(self, pos: int) -> torch.Tensor:
        """Rows of the ``pos``-th video as float32 [T, F] (a view for float32 rows)."""
        a = int(self.starts[pos])
        x = self.data[a:a + int(self.lengths[pos])]
        return from_store_dtype(x.view(np.float16) if self.kind == "float16" else x, self.kind)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"row kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        want = np.float32 if self.kind == "float32" else np.uint16
        if self.data.dtype != want or self.data.ndim != 2:
            raise ValueError(f"{self.kind} rows must be a 2-D {np.dtype(want).name} array, "
                             f"got {self.data.dtype} with shape {self.data.shape}")


# ----------------------------------------------------------------- numba kernels

def _gather(src, kind, starts, lengths, offsets, out_bits, out, mean, std, scale):
    """Rows of video b = starts[b] .. + lengths[b] to out rows offsets[b] ..; ``kind``
    0: float32 rows, 1: float16 bits, 2: bfloat16 bits (``out_bits`` is ``out``'s
    uint32 view).  One compiled build per source dtype (the branches of the other
    kinds are typed but never taken)."""
    F = src.shape[1]
    W = out.shape[1]
    for b in _range(starts.shape[0]):
        a = starts[b]
        o = offsets[b]
        for j in range(lengths[b]):
            s = src[a + j]
            d = out_bits[o + j]
            v = out[o + j]
            if kind == 0:
                for f in range(F):
                    v[f] = s[f]
            elif kind == 1:
                for f in range(F):   # magnitude bits in float32 places, exponent still biased 15
                    d[f] = (np.uint32(s[f]) & _U7FFF) << _U13
                for f in range(F):   # rebias: exact, a power of two (subnormals become normal)
                    v[f] = v[f] * _TWO112
                for f in range(F):   # infinities and nan (payload kept), then the sign
                    h = np.uint32(s[f])
                    mag = d[f] if (h & _U7C00) != _U7C00 else _INF_BITS | ((h & _U3FF) << _U13)
                    d[f] = mag | ((h & _U8000) << _U16)
            else:
                for f in range(F):
                    d[f] = np.uint32(s[f]) << _U16
            for f in range(F, W):
                d[f] = 0
            if scale:
                for f in range(F):
                    v[f] = (v[f] - mean[f]) / std[f]


_KERNELS: dict = {}


def _kernels(parallel: bool):
    """The gather kernel, compiled once per process (numba's cache on disk)."""
    got = _KERNELS.get(parallel)
    if got is None:
        import numba

        global _range
        jit = numba.njit(cache=True, nogil=True, parallel=parallel)
        _range = numba.prange  # resolved when the kernels compile
        got = _KERNELS[parallel] = jit(_variant(_gather, "_parallel" if parallel else "_serial"))
    return got


def _variant(fn, suffix: str):
    """A copy of ``fn`` under another name: numba's disk cache is keyed by the function's
    name, not by ``parallel``, so the serial and the parallel build need names of their own
    (else a DataLoader worker could load the parallel build, and GNU OpenMP ends a forked
    process that uses it)."""
    g = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__,
                           fn.__closure__)
    g.__qualname__ = fn.__qualname__ + suffix
    return g


_range = range
_U7FFF, _U7C00, _U3FF, _U8000 = (np.uint32(v) for v in (0x7FFF, 0x7C00, 0x3FF, 0x8000))
_U13, _U16, _INF_BITS = np.uint32(13), np.uint32(16), np.uint32(0x7F800000)
_TWO112 = np.float32(2.0 ** 112)


def _in_worker() -> bool:
    return torch.utils.data.get_worker_info() is not None


def gather(rows: RowSource, positions, stats: Optional[dict] = None,
           parallel: Optional[bool] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The videos at ``positions`` packed as :func:`dejavid.data.dataset.collate_packed` packs
    them: ``(x [N, F] float32, offsets [B + 1] int64)``, x the first F columns of a
    64-byte aligned ``[N, packed_row_width(F)]`` tensor whose other columns are zero.

    ``stats`` (``{"mean", "std"}`` float32 [F]) standardises as
    :func:`dejavid.data.standardize.apply` does.  ``parallel`` defaults to True except in a
    DataLoader worker (whose siblings already use the cores)."""
    pos = np.asarray(positions, dtype=np.int64)
    if pos.ndim != 1 or len(pos) == 0:
        raise ValueError("gather needs a non-empty list of video positions")
    n = len(rows.starts)
    if pos.min() < 0 or pos.max() >= n:
        raise ValueError(f"video positions must be in [0, {n}), got {pos.min()}..{pos.max()}")
    starts = rows.starts[pos]
    lengths = rows.lengths[pos]
    offsets = offsets_of(lengths)
    F = rows.data.shape[1]
    full = padded_rows(int(offsets[-1]), F, zero=False)  # the kernel writes the padding
    out = full.numpy()
    if stats is None:
        mean = std = np.zeros(0, dtype=np.float32)
    else:
        mean = stats["mean"].to(torch.float32).contiguous().numpy()
        std = stats["std"].to(torch.float32).contiguous().numpy()
        if mean.shape != (F,) or std.shape != (F,):
            raise ValueError(f"standardisation statistics are for {mean.shape[-1]} features, "
                             f"the rows have {F}")
    if parallel is None:
        parallel = not _in_worker()
    try:
        kernel = _kernels(bool(parallel))
    except ImportError:  # numba missing: the same batch, one video at a time in torch
        full[:, F:].zero_()
        for b, p in enumerate(pos.tolist()):
            full[offsets[b]:offsets[b + 1], :F].copy_(standardize_apply(rows.video(p), stats))
    else:
        kernel(rows.data, KINDS.index(rows.kind), starts, lengths, offsets,
               out.view(np.uint32), out, mean, std, stats is not None)
    return full[:, :F], torch.from_numpy(offsets)
