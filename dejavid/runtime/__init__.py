"""Process-wide settings for dejavid's scripts, applied when this module is imported.

    import dejavid.runtime  # noqa: F401  (first, before torch and numba)

* ``OMP_WAIT_POLICY=PASSIVE`` (unless set): OpenMP workers (numba's parallel kernels,
  torch's ops) otherwise spin after every parallel region; between short kernels, and
  on machines shared with other work, the spinning takes the cores the next step
  needs (demo epochs 4x slower on a loaded 2-core machine, bench/RESULTS.md).
* numba's vector width on Intel AVX-512 server cores (:mod:`dejavid.runtime.cpu_tuning`).
* ``THP_MEM_ALLOC_ENABLE=1`` (unless set): torch puts CPU tensors of 2 MB and more on
  transparent huge pages.  Each batch's [N, F] features (~150 MB at HMDB51's shape) are a
  fresh allocation, and faulting them in 4 KiB pages took more than the copy itself
  (bench/bench_data.py, feature store pass 0.55-0.8 s -> 0.18-0.26 s; bench/RESULTS.md).

All are read once, when OpenMP / numba / torch's allocator load, so they only take
effect when this runs before torch and numba are imported.  The entry scripts, benchmarks and tests
import it first.  ``import dejavid`` does *not*: a library should not change the
environment of the program that imports it (the variables are inherited by every
subprocess it starts, and by then torch is usually loaded anyway).  Library users
who want the same settings import this module first, or set the variables themselves.
"""
from __future__ import annotations

import os

from . import cpu_tuning


__all__ = ["configure"]


def configure() -> None:
    """Apply the settings (idempotent; values the user set are kept)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    cpu_tuning.apply()


configure()
