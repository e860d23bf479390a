"""Checks of kernel_setup/ that need no GPU.

- nvcc compiles csrc/kernels.cu for one arch (sm_90, ``-c`` only) with no
  register spills in the float32 kernels;
- g++ compiles csrc/binding.cpp against this torch's headers (the binding uses
  CPU-side torch headers only, so a CPU-only torch is enough);
- the two objects link into the ``dejavid_kernels`` module (against libcudart;
  the binding needs none of torch's CUDA libraries), which imports and rejects
  CPU tensors with its own message;
- the kernels compiled for the host under AddressSanitizer run the CUDA
  backend on tile-edge shapes without one out-of-bounds access;
- setup.py builds SASS for sm_80 and sm_90 plus PTX, and the main package
  never builds kernel_setup.

Each check is skipped when its tool (nvcc, g++, libcudart, libasan) is missing.
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
import torch.utils.cpp_extension as cpp_ext

ROOT = Path(__file__).resolve().parents[1]
KS = ROOT / "kernel_setup"
CSRC = KS / "csrc"
sys.path.insert(0, str(KS / "emulation"))
import host_emulation  # noqa: E402


def _nvcc():
    found = shutil.which("nvcc")
    if found is None and cpp_ext.CUDA_HOME:
        candidate = Path(cpp_ext.CUDA_HOME) / "bin" / "nvcc"
        found = str(candidate) if candidate.is_file() else None
    return found


def _cuda_lib_dir(nvcc):
    """Folder of libcudart.so for this nvcc (nvcc may be a wrapper script), or None."""
    proc = subprocess.run([nvcc, "--dryrun", "-c", "x.cu"], capture_output=True, text=True)
    top = re.search(r"^#\$ TOP=(.+)$", proc.stderr + proc.stdout, re.M)
    homes = [Path(top.group(1).strip())] if top else []
    homes += [Path(h) for h in (os.environ.get("CUDA_HOME"), cpp_ext.CUDA_HOME) if h]
    for home in homes:
        for sub in ("lib64", "lib", "targets/x86_64-linux/lib"):
            if (home / sub / "libcudart.so").exists():
                return (home / sub).resolve()
    return None


def _run(cmd, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("kernel_build")


@pytest.fixture(scope="module")
def kernels_obj(build_dir):
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found")
    obj = build_dir / "kernels.o"
    proc = _run([nvcc, "-c", "-std=c++17", "-O3", "-Xcompiler", "-fPIC",
                 "-gencode", "arch=compute_90,code=sm_90", "-Xptxas", "-v",
                 CSRC / "kernels.cu", "-o", obj])
    return obj, proc.stderr


@pytest.fixture(scope="module")
def binding_obj(build_dir):
    cxx = host_emulation.compiler()
    if cxx is None:
        pytest.skip("no host C++ compiler")
    obj = build_dir / "binding.o"
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    includes = [f"-I{p}" for p in cpp_ext.include_paths()]
    _run([cxx, "-c", "-fPIC", "-O0", "-std=c++20", "-Wall", "-Wextra", "-Werror",
          "-Wno-unused-parameter", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
          "-DTORCH_EXTENSION_NAME=dejavid_kernels", *includes,
          f"-I{sysconfig.get_paths()['include']}", CSRC / "binding.cpp", "-o", obj])
    return obj


def test_nvcc_compiles_kernels_without_spills(kernels_obj):
    obj, ptxas_log = kernels_obj
    assert obj.is_file() and obj.stat().st_size > 0
    # ptxas -v: one "Compiling entry function '<mangled>'" line, then its spill line.
    spills = re.findall(r"Compiling entry function '(\w+)'.*?(\d+) bytes spill stores",
                        ptxas_log, re.S)
    assert len(spills) >= 7, ptxas_log
    for name, nbytes in spills:
        if "IfE" in name:  # float32 instantiations: the ones that run in training
            assert int(nbytes) == 0, f"{name} spills {nbytes} bytes\n{ptxas_log}"


def test_binding_compiles_against_torch_headers(binding_obj):
    assert binding_obj.is_file() and binding_obj.stat().st_size > 0


def test_extension_links_imports_and_checks_devices(kernels_obj, binding_obj, build_dir):
    cudart = _cuda_lib_dir(_nvcc())
    if cudart is None:
        pytest.skip("libcudart.so not found next to nvcc")
    torch_lib = Path(torch.__file__).parent / "lib"
    so = build_dir / f"dejavid_kernels{sysconfig.get_config_var('EXT_SUFFIX')}"
    _run([host_emulation.compiler(), "-shared", kernels_obj[0], binding_obj,
          f"-L{torch_lib}", f"-L{cudart}", "-lc10", "-ltorch", "-ltorch_cpu", "-ltorch_python",
          "-lcudart", f"-Wl,-rpath,{cudart}", "-o", so])
    probe = (
        "import torch, dejavid_kernels as K\n"
        "x = torch.randn(5, 3); mu = torch.randn(2, 4, 3)\n"
        "try:\n"
        "    K.local_cost(x, mu, mu.exp(), torch.empty(2, 4, 5))\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
        "print(sorted(n for n in dir(K) if not n.startswith('_')))\n")
    out = _run([sys.executable, "-c", probe], cwd=build_dir,
               env={**os.environ, "PYTHONPATH": str(build_dir)}).stdout
    assert "x must be a CUDA tensor" in out
    assert "['dba', 'dtw', 'local_cost', 'path_cost', 'path_grads']" in out


ASAN_PROBE = """
import sys
sys.path[:0] = [{tests!r}, {emulation!r}]
import torch, host_emulation, test_align_cuda as t
from parity import make_inputs
from dejavid.alignment import cuda as align_cuda
from dejavid.alignment import ref as align_ref
align_cuda._C = host_emulation.EmulatedKernels(host_emulation.build(sanitize=True))
be = align_cuda.BACKEND
for shape, mode in [(((1,), 3, 1, 2), "hv"), (((2, 70, 1, 7), 35, 64, 3), "hv"),
                    (((2, 70, 1, 7), 35, 64, 3), "fixed")]:
    t._compare_backend(be, *make_inputs(*shape), mode)
t._compare_backend(be, *make_inputs((5, 33, 1), 17, 6, 3, dtype=torch.float64), "hvd")
x, o, mu, th, _ = make_inputs((7, 1, 33, 90), 35, 5, 31)
align_cuda.local_cost_cuda(x, o, mu, th)
x, o, mu, th, _ = make_inputs((7, 150, 2, 33), 37, 64, 1)
be.dba_accumulate(x, o, align_ref.align_forward_ref(x, o, mu, th, "hv")[1])
print("clean")
"""


def test_kernels_stay_in_bounds_under_address_sanitizer():
    libasan = host_emulation.asan_runtime()
    if libasan is None:
        pytest.skip("no libasan for the host compiler")
    env = {**os.environ, "LD_PRELOAD": libasan, "ASAN_OPTIONS": "detect_leaks=0"}
    # Some kernels' address-space randomisation breaks older ASan runtimes outright.
    bare = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, env=env,
                          timeout=120)
    if bare.returncode != 0:
        pytest.skip("the ASan runtime cannot host Python here")
    code = ASAN_PROBE.format(tests=str(ROOT / "tests"), emulation=str(KS / "emulation"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=ROOT)
    assert proc.returncode == 0 and "clean" in proc.stdout, proc.stderr[-4000:]


def _load_setup():
    spec = importlib.util.spec_from_file_location("kernel_setup_setup", KS / "setup.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # no side effects: setup() runs only under __main__
    return mod


def test_setup_arch_list(monkeypatch):
    monkeypatch.delenv("DEJAVID_CUDA_ARCHS", raising=False)
    flags = _load_setup().arch_flags()
    assert "-gencode=arch=compute_80,code=sm_80" in flags
    assert "-gencode=arch=compute_90,code=sm_90" in flags
    assert flags[-1] == "-gencode=arch=compute_90,code=compute_90"  # PTX fallback
    assert _load_setup().arch_flags("90") == ["-gencode=arch=compute_90,code=sm_90",
                                              "-gencode=arch=compute_90,code=compute_90"]
    with pytest.raises(ValueError):
        _load_setup().arch_flags("sm_90")


def test_main_package_never_builds_kernels():
    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = meta["tool"]["setuptools"]["packages"]["find"]["include"]
    assert include == ["dejavid", "dejavid.*"]
    assert "ext-modules" not in meta["tool"]["setuptools"]
    # The wheel ships every layer of the package and nothing of kernel_setup/.
    from setuptools import find_packages
    shipped = set(find_packages(ROOT, include=include))
    layers = {"dejavid"} | {f"dejavid.{p.parent.name}" for p in (ROOT / "dejavid").glob("*/__init__.py")}
    assert shipped == layers, shipped ^ layers
    assert not (ROOT / "setup.py").exists()
