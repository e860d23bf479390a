"""Opt-in wall time per stage of a run (data loading, forward, backward, ...).

    timer = StageTimer()
    with timer.stage("forward"):
        dist = model(x, offsets)
    for batch in timer.iterate("data", loader):   # the time spent waiting for each batch
        ...
    timer.lap(epoch=1)        # {"epoch": 1, "forward": 12.3, "data": 4.5}; totals reset

:func:`dejavid.fit` takes ``timer=`` or, with the environment variable ``DEJAVID_TIMING=1``,
makes its own, and writes one line per epoch to ``timing.jsonl`` in the run folder.  Off
(the default) every call site gets :data:`NULL_TIMER`, whose ``stage`` hands back one shared
no-op context and whose ``iterate`` returns the iterable itself: nothing is timed or stored.
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Callable, Iterable, Iterator, Optional

ENV = "DEJAVID_TIMING"
_NOOP = contextlib.nullcontext()   # reusable: entering it does nothing


class StageTimer:
    """Accumulates wall-clock seconds per stage name until :meth:`lap`.

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs at the end of every stage, so that
    queued GPU work is charged to the stage that queued it."""

    enabled = True

    def __init__(self, sync: Optional[Callable[[], None]] = None):
        self.totals: dict[str, float] = {}
        self.laps: list[dict] = []
        self._sync = sync

    def _add(self, name: str, t0: float) -> None:
        if self._sync is not None:
            self._sync()
        self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - t0

    @contextlib.contextmanager
    def stage(self, name: str):
        """Charge the time spent inside the ``with`` block to ``name``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._add(name, t0)

    def iterate(self, name: str, iterable: Iterable) -> Iterator:
        """Yield from ``iterable``, charging the time each item takes to arrive to ``name``."""
        it = iter(iterable)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                self._add(name, t0)
                return
            self._add(name, t0)
            yield item

    def lap(self, **labels) -> dict:
        """The totals since the last lap, with ``labels`` first; stored in ``laps``, then reset."""
        row = {**labels, **{k: round(v, 6) for k, v in self.totals.items()}}
        self.laps.append(row)
        self.totals = {}
        return row


class NullTimer:
    """The timer when timing is off: no clock reads, nothing stored."""

    enabled = False
    laps: tuple = ()

    def stage(self, name: str):
        return _NOOP

    def iterate(self, name: str, iterable: Iterable) -> Iterable:
        return iterable

    def lap(self, **labels) -> dict:
        return {}


NULL_TIMER = NullTimer()


def timing_requested() -> bool:
    """True when the environment variable DEJAVID_TIMING is set to something other than 0."""
    return os.environ.get(ENV, "0") not in ("", "0")


def timer_from_env(device=None):
    """A :class:`StageTimer` when DEJAVID_TIMING is set (synchronising CUDA on a CUDA
    ``device``), else :data:`NULL_TIMER`."""
    if not timing_requested():
        return NULL_TIMER
    sync = None
    if device is not None and getattr(device, "type", str(device).split(":")[0]) == "cuda":
        import torch
        sync = torch.cuda.synchronize
    return StageTimer(sync)
