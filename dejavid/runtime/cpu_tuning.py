"""512-bit vectors for the numba kernels on Intel server cores that execute them well.

LLVM's tuning for Intel cores with AVX-512 prefers 256-bit vectors (older cores
lower their clock under 512-bit code), so numba emits 256-bit code there.  The
local cost needs three vector operations per element (subtract, abs,
multiply-add); on Sapphire/Emerald/Granite Rapids cores three 256-bit operations
issue per cycle against two 512-bit ones, so 512-bit code can do 16 x 2 / 3 = 10.7
elements per cycle instead of 8.  Measured on Emerald Rapids: the numba kernels
1.1x faster (alternating processes, bench/bench_vector_width.py), the local cost
37 % of the matmul rate against 31 % (bench/RESULTS.md).

numba reads ``NUMBA_CPU_FEATURES`` once, when it is imported, and uses it for the
whole process; :func:`apply` sets it (host features plus ``-prefer-256-bit``) when
dejavid is imported before numba, as the entry scripts and the tests do.

``DEJAVID_NUMBA_512``: ``auto`` (default: only on the cores named in
:data:`AUTO_CPUS`), ``1`` (any AVX-512 host), ``0`` (never).  A
``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` the user set, or ``NUMBA_ENABLE_AVX=0``,
is always left alone.
"""
from __future__ import annotations

import os
import sys

ENV_VAR = "DEJAVID_NUMBA_512"
CHOICES = ("auto", "1", "0")
# LLVM host CPU names of the cores where 512-bit code was measured (Emerald Rapids)
# or shares that core's vector ports (Golden Cove / Raptor Cove / Redwood Cove and
# later server cores).
AUTO_CPUS = frozenset({"sapphirerapids", "emeraldrapids", "graniterapids",
                       "graniterapids-d", "diamondrapids"})


def numba_features(env, cpu_name: str, cpu_features: str) -> str | None:
    """The ``NUMBA_CPU_FEATURES`` value to set, or None to leave numba's default.

    ``env``: the environment (a mapping); ``cpu_name``/``cpu_features``: LLVM's host
    CPU name and flattened feature string (``+avx512f,...``).
    """
    choice = env.get(ENV_VAR, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"{ENV_VAR} must be one of {', '.join(CHOICES)}, got "
                         f"{env.get(ENV_VAR)!r}")
    if choice == "0":
        return None
    if env.get("NUMBA_CPU_NAME") or env.get("NUMBA_CPU_FEATURES"):
        return None
    if env.get("NUMBA_ENABLE_AVX", "").strip() == "0":
        return None
    features = cpu_features.split(",")
    if "+avx512f" not in features:
        return None
    if choice == "auto" and cpu_name not in AUTO_CPUS:
        return None
    kept = [f for f in features if f and f.lstrip("+-") != "prefer-256-bit"]
    return ",".join(kept + ["-prefer-256-bit"])


def apply(env=None) -> str | None:
    """Set ``NUMBA_CPU_FEATURES`` in ``env`` (default ``os.environ``) where
    :func:`numba_features` says so; returns the value set, or None.

    Does nothing once numba is imported (its configuration is read then), and
    nothing when llvmlite is missing (dispatch then falls back to the reference).
    """
    env = os.environ if env is None else env
    if "numba" in sys.modules:
        return None
    if env.get(ENV_VAR, "auto").strip().lower() == "0":
        return None  # before loading LLVM: off means no cost at all
    try:
        import llvmlite.binding as llb
        cpu_name = llb.get_host_cpu_name()
        cpu_features = llb.get_host_cpu_features().flatten()
    except (ImportError, OSError, RuntimeError):
        return None
    value = numba_features(env, cpu_name, cpu_features)
    if value is not None:
        env["NUMBA_CPU_FEATURES"] = value
    return value


def describe(env=None) -> str:
    """One line for benchmark headers: which vector width numba was told to prefer."""
    env = os.environ if env is None else env
    features = env.get("NUMBA_CPU_FEATURES")
    if features and "-prefer-256-bit" in features.split(","):
        return "numba: 512-bit vectors preferred (NUMBA_CPU_FEATURES ... -prefer-256-bit)"
    if features:
        return "numba: NUMBA_CPU_FEATURES set by the user"
    return "numba: LLVM's default vector width for this CPU"
