"""DejaVid: learned temporal matching of variable-length embedding sequences."""
import os

# OpenMP workers (numba's parallel kernels, torch's ops) otherwise spin after every
# parallel region; between short kernels, and on machines shared with other work, the
# spinning takes the cores the next step needs (demo epochs 4x slower on a loaded
# 2-core machine, bench/RESULTS.md).  OpenMP reads this once, when it is loaded, so it
# only takes effect when dejavid is imported before torch, as the entry scripts do.
# A value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Large CPU tensors (a batch's [N, F] features: ~150 MB at HMDB51's shape) on transparent
# huge pages: each batch is a fresh allocation, and faulting it in 4 KiB pages took about
# 3x the copy itself (bench/bench_data.py: store epoch 0.55-0.8 s -> 0.26 s).  torch reads
# this at its first allocation, so, like the wait policy, only before torch is imported.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

# numba's vector width on Intel AVX-512 server cores: see dejavid/cpu_tuning.py.  Like
# the wait policy above, it only takes effect when dejavid is imported before numba.
from . import cpu_tuning as _cpu_tuning  # noqa: E402

_cpu_tuning.apply()
