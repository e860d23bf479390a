"""CPU threads that do not spin, for a program that imported torch before dejavid.

The scripts import :mod:`dejavid.runtime` first, which sets ``OMP_WAIT_POLICY=PASSIVE``
before any OpenMP runtime loads.  A user's program usually has torch loaded before it
builds an estimator; torch's OpenMP runtime then read the default policy (spin after
every parallel region), and numba's default 'omp' threading layer shares that runtime.
Between the many short kernels and small torch ops of a training step the spinning
threads take the cores the next one needs: on a loaded 2-core machine the estimator was
30x slower than the script, and a profile put the time in torch's smallest ops
(cross-entropy on [32, 9] taking 5 ms; bench/bench_library.py, bench/RESULTS.md).

:func:`quiet_cpu`, which the estimators enter around their fits and predictions, fixes
both sides where OpenMP was not told to be passive:

* numba: the 'workqueue' threading layer (threads that sleep when idle) instead of
  'omp', chosen before numba starts its threads, unless the user chose a layer
  (``NUMBA_THREADING_LAYER``) or numba's threads already run (:func:`quiet_threads`);
* torch: one intra-op thread for the duration of the call (restored after), so that its
  small ops run inline instead of waking spinning workers.

The workqueue layer must not be entered by two threads at once (numba aborts the
process), so while it is in use the estimators' calls take turns (an RLock); each of
them still runs its numba kernels on every core.
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


def _openmp_may_spin() -> bool:
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() != "PASSIVE"


@contextlib.contextmanager
def quiet_cpu():
    """The estimators' calls run inside this: numba's layer chosen (:func:`quiet_threads`),
    calls serialised while it is the workqueue (:func:`kernel_lock`), and torch's
    intra-op threads at 1 for the call where OpenMP may spin."""
    quiet_threads()
    with kernel_lock():
        if not _openmp_may_spin():
            yield
            return
        import torch
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)
