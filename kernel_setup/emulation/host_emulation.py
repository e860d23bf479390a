"""Run the CUDA kernels of ``csrc/kernels.cu`` on the host, for tests without a GPU.

``build()`` compiles ``emulated_ops.cpp`` (which includes kernels.cu under
``cuda_host_emulation.h``) into a shared library with the host C++ compiler;
``EmulatedKernels`` exposes it with the same functions and arguments as the
``dejavid_kernels`` extension (csrc/binding.cpp), taking CPU tensors.  Setting
``dejavid.alignment.cuda._C`` to an instance runs the whole CUDA backend, Python op
included, on CPU tensors.  Slow (every CUDA thread is a host thread): tiny
shapes only.  Not used by the extension build.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
CSRC = HERE.parent / "csrc"
SOURCES = [HERE / "emulated_ops.cpp", HERE / "cuda_host_emulation.h", CSRC / "kernels.cu",
           CSRC / "kernels.h", CSRC / "dtw_pair.h"]
FLAGS = ["-O2", "-std=c++20", "-pthread", "-shared", "-fPIC", "-Wall", "-Wextra",
         "-Wno-unknown-pragmas"]
# AddressSanitizer build: any kernel read or write outside an input or output
# tensor aborts the process (run it with libasan preloaded, see asan_runtime()).
ASAN_FLAGS = ["-fsanitize=address", "-fno-omit-frame-pointer", "-g"]


def compiler() -> str | None:
    """The host C++ compiler ($CXX or g++), None when there is none."""
    return shutil.which(os.environ.get("CXX", "g++"))


def asan_runtime() -> str | None:
    """Path of the compiler's libasan.so (to LD_PRELOAD into Python), None if absent."""
    cxx = compiler()
    if cxx is None:
        return None
    proc = subprocess.run([cxx, "-print-file-name=libasan.so"], capture_output=True, text=True)
    path = proc.stdout.strip()
    return path if proc.returncode == 0 and os.path.isabs(path) and os.path.isfile(path) else None


def build(cache_root: str | Path | None = None, sanitize: bool = False) -> Path:
    """Compile the emulation library once per source version; returns its path."""
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no host C++ compiler (set CXX or install g++)")
    flags = FLAGS + (ASAN_FLAGS if sanitize else [])
    digest = hashlib.sha256(" ".join([cxx, *flags]).encode())
    for src in SOURCES:
        digest.update(src.read_bytes())
    out_dir = Path(cache_root or tempfile.gettempdir()) / f"dejavid_emu_{digest.hexdigest()[:16]}"
    lib = out_dir / "libdejavid_emu.so"
    if lib.is_file():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f"build-{os.getpid()}.so"
    proc = subprocess.run([cxx, *flags, "-o", str(tmp), str(HERE / "emulated_ops.cpp")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"host build of the kernels failed:\n{proc.stderr}")
    os.replace(tmp, lib)  # atomic: a concurrent build never sees half a file
    return lib


_P = ctypes.c_void_p
_I = ctypes.c_int64
_SIGNATURES = {
    "local_cost": [_P, _I, _P, _P, _I, _I, _P, _I],
    "dtw": [_P, _I, _P, _I, _I, _I, _I, ctypes.c_int, _P, _P],
    "path_cost": [_P, _P, _I, _P, _P, _P, _I, _I, _I, _P, _P],
    "path_grads": [_P, _P, _I, _I, _P, _P, _P, _P, _I, _I, _I, _P, _P, _P],
    "dba": [_P, _P, _I, _P, _I, _I, _P, _P],
}
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def _ptr(t: torch.Tensor | None):
    if t is None:
        return None
    if t.device.type != "cpu" or not t.is_contiguous():
        raise ValueError("host emulation takes contiguous CPU tensors")
    return t.data_ptr()


class EmulatedKernels:
    """Drop-in for the ``dejavid_kernels`` module on CPU tensors (same functions and shapes)."""

    def __init__(self, lib_path: str | Path):
        self.lib = ctypes.CDLL(str(lib_path))
        for name, args in _SIGNATURES.items():
            for suffix in _SUFFIX.values():
                fn = getattr(self.lib, f"djv_{name}_{suffix}")
                fn.argtypes = args
                fn.restype = ctypes.c_int
        self.lib.djv_dtw_pair_f64.argtypes = [_P, _I, _I, _I, ctypes.c_int, _P]
        self.lib.djv_dtw_pair_f64.restype = None

    def _call(self, name, dtype, *args):
        if dtype not in _SUFFIX:
            raise ValueError(f"dejavid CUDA kernels support float32 and float64, got {dtype}")
        err = getattr(self.lib, f"djv_{name}_{_SUFFIX[dtype]}")(*args)
        if err != 0:
            raise RuntimeError(f"emulated kernel {name} failed with code {err}")

    def local_cost(self, x, mu, w, out):
        C, K, F = mu.shape
        assert out.shape == (C, K, x.shape[0]) and w.shape == mu.shape and x.shape[1] == F
        self._call("local_cost", x.dtype, _ptr(x), x.shape[0], _ptr(mu), _ptr(w), C * K, F,
                   _ptr(out), x.shape[0])

    def dtw(self, cost, offsets, b0, nb, hvd, dist, paths):
        C, K, ncols = cost.shape
        assert offsets.dtype == torch.int64 and paths.dtype == torch.int32
        self._call("dtw", cost.dtype, _ptr(cost), ncols, _ptr(offsets), b0, nb, C, K, int(hvd),
                   _ptr(dist), _ptr(paths))

    def path_cost(self, x, offsets, mu, w, paths, partial, dist):
        B, C, K, _ = paths.shape
        assert partial.shape == (B, C, K) and dist.shape == (B, C)
        self._call("path_cost", x.dtype, _ptr(x), _ptr(offsets), B, _ptr(mu), _ptr(w),
                   _ptr(paths), C, K, x.shape[1], _ptr(partial), _ptr(dist))

    def path_grads(self, x, offsets, mu, w, paths, grad, grad_mu, grad_theta, grad_x):
        B, C, K, _ = paths.shape
        assert grad.shape == (B, C) and grad.dtype == x.dtype
        self._call("path_grads", x.dtype, _ptr(x), _ptr(offsets), x.shape[0], B, _ptr(mu),
                   _ptr(w), _ptr(paths), _ptr(grad), C, K, x.shape[1], _ptr(grad_mu),
                   _ptr(grad_theta), _ptr(grad_x))

    def dba(self, x, offsets, paths, sums, counts):
        B, _, K, _ = paths.shape
        self._call("dba", x.dtype, _ptr(x), _ptr(offsets), B, _ptr(paths), K, x.shape[1],
                   _ptr(sums), _ptr(counts))

    def dtw_pair(self, D: torch.Tensor, hvd: bool):
        """The per-pair steps alone on a float64 cost [K, T]: (A [K, T], path [K, 2])."""
        A = D.to(torch.float64).contiguous().clone()
        K, T = A.shape
        path = torch.empty(K, 2, dtype=torch.int32)
        self.lib.djv_dtw_pair_f64(_ptr(A), T, K, T, int(hvd), _ptr(path))
        return A, path
