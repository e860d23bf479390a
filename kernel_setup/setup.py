"""Build the DejaVid CUDA kernels into the active environment:

    pip install --no-build-isolation ./kernel_setup

``--no-build-isolation`` lets the build see the installed torch, which must be a
CUDA build (the one the extension will be imported with), with nvcc on PATH or
CUDA_HOME set.  The result is the top-level module ``dejavid_kernels``, used by
``dejavid/alignment/cuda.py``.

Architectures: sm_80 (A100), sm_86, sm_89, sm_90 (H100/H200) as machine code,
plus PTX of the newest one so later GPUs JIT-compile it.  Override with e.g.
``DEJAVID_CUDA_ARCHS="90"`` for a faster single-arch build.
"""
import os
import re
import sys
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
DEFAULT_ARCHS = "80;86;89;90"
NVCC_FLAGS = ["-O3", "-lineinfo"]
CXX_FLAGS = ["-O3"]


def arch_flags(archs: str | None = None) -> list[str]:
    """nvcc -gencode flags: SASS for every arch, PTX for the newest."""
    archs = archs or os.environ.get("DEJAVID_CUDA_ARCHS") or DEFAULT_ARCHS
    codes = [a.strip().replace(".", "") for a in re.split(r"[;, ]+", archs) if a.strip()]
    if not codes or not all(re.fullmatch(r"\d+[af]?", c) for c in codes):
        raise ValueError("DEJAVID_CUDA_ARCHS must list compute capabilities like '80;90', "
                         f"got {archs!r}")
    flags = [f"-gencode=arch=compute_{c},code=sm_{c}" for c in codes]
    newest = max(codes, key=lambda c: int(re.match(r"\d+", c).group()))
    flags.append(f"-gencode=arch=compute_{newest},code=compute_{newest}")
    return flags


def main():
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CUDAExtension
    except ImportError:
        sys.exit("kernel_setup needs torch installed first, and the build must see it:\n"
                 "    pip install --no-build-isolation ./kernel_setup")
    if torch.version.cuda is None:
        sys.exit(f"torch {torch.__version__} is a CPU-only build; the CUDA kernels need a CUDA "
                 "build of torch (the dejavid package itself runs without them)")
    if CUDA_HOME is None:
        sys.exit("nvcc not found: install the CUDA toolkit matching torch.version.cuda "
                 f"({torch.version.cuda}) and put nvcc on PATH or set CUDA_HOME")
    setup(
        name="dejavid-kernels",
        version="0.1.0",
        description="CUDA kernels of the DejaVid alignment (see dejavid/alignment/cuda.py)",
        license="MIT",
        python_requires=">=3.10",
        ext_modules=[CUDAExtension(
            "dejavid_kernels",
            sources=["csrc/binding.cpp", "csrc/kernels.cu"],
            include_dirs=[str(HERE / "csrc")],
            extra_compile_args={"cxx": CXX_FLAGS, "nvcc": NVCC_FLAGS + arch_flags()},
        )],
        cmdclass={"build_ext": BuildExtension},
    )


if __name__ == "__main__":
    main()
