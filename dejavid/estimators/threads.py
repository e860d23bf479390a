"""CPU threads that do not spin, for a program that imported torch before dejavid.

The scripts import :mod:`dejavid.runtime` first, which sets ``OMP_WAIT_POLICY=PASSIVE``
before any OpenMP runtime loads.  A user's program usually has torch loaded before it
builds an estimator; torch's OpenMP runtime then read the default policy (spin after
every parallel region), and numba's default 'omp' threading layer shares that runtime.
Between the many short kernels of a training epoch the spinning threads take the
cores the next kernel needs: on a loaded 2-core machine the estimator was 30x slower
than the script (bench/bench_library.py, bench/RESULTS.md).

:func:`quiet_threads`, called by the estimators before their first kernel, picks
numba's 'workqueue' layer instead (threads that sleep when idle) when all of these
hold: numba has not started its threads yet, the user chose no layer
(``NUMBA_THREADING_LAYER``), and OpenMP was not told to be passive.  Otherwise nothing
changes.  The workqueue layer must not be entered by two threads at once (numba aborts
the process), so :func:`kernel_lock` serialises the estimators' fits and predictions
while it is in use; each of them still runs its kernels on every core.
"""
from __future__ import annotations

import contextlib
import os
import threading

_LOCK = threading.RLock()
_CHOSEN = {"workqueue": False}


def _numba_started() -> bool:
    try:
        from numba.np.ufunc import parallel
    except ImportError:
        return True   # no numba: nothing to choose
    return bool(getattr(parallel, "_is_initialized", True))


def quiet_threads() -> bool:
    """Choose numba's workqueue layer where the OpenMP one would spin (see the module
    docstring); True when this call or an earlier one chose it."""
    with _LOCK:
        if _CHOSEN["workqueue"]:
            return True
        if os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE":
            return False
        if os.environ.get("NUMBA_THREADING_LAYER"):
            return False
        if _numba_started():
            return False
        import numba
        if numba.config.THREADING_LAYER not in ("default", ""):
            return False
        numba.config.THREADING_LAYER = "workqueue"
        _CHOSEN["workqueue"] = True
        return True


def kernel_lock():
    """A context that serialises estimator calls while numba runs on the workqueue layer
    (which aborts on concurrent use), else one that does nothing."""
    if _CHOSEN["workqueue"]:
        return _LOCK
    try:
        import numba
        layer = (numba.threading_layer() if _numba_started()
                 else numba.config.THREADING_LAYER)
    except (ImportError, ValueError):
        return contextlib.nullcontext()
    return _LOCK if layer == "workqueue" else contextlib.nullcontext()
