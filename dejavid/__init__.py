"""DejaVid: learned temporal matching of variable-length embedding sequences."""
import os

# OpenMP workers (numba's parallel kernels, torch's ops) otherwise spin after every
# parallel region; between short kernels, and on machines shared with other work, the
# spinning takes the cores the next step needs (demo epochs 4x slower on a loaded
# 2-core machine, bench/RESULTS.md).  OpenMP reads this once, when it is loaded, so it
# only takes effect when dejavid is imported before torch, as the entry scripts do.
# A value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# numba's vector width on Intel AVX-512 server cores: see dejavid/cpu_tuning.py.  Like
# the wait policy above, it only takes effect when dejavid is imported before numba.
from . import cpu_tuning as _cpu_tuning  # noqa: E402

_cpu_tuning.apply()
