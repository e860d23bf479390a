"""Stopping a training run cleanly: SIGINT/SIGTERM, or a chosen step for tests."""
from __future__ import annotations

import os
import signal
import threading
from typing import Optional

from tqdm import tqdm

STOP_AFTER_ENV = "DEJAVID_STOP_AFTER_STEPS"


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop finishes its step, checkpoints and exits.
    A second signal interrupts at once.

    ``DEJAVID_STOP_AFTER_STEPS=N`` requests the same stop after this process's N-th
    training step, as a signal landing then would.  It exists so that tests (and users
    checking their resume set-up) can stop a run at a step they choose: a real signal
    lands wherever the run happens to be, and under DDP the number of steps done decides
    how far the weights drift from a single-process run.  Every rank reads the same value,
    so all ranks stop after the same step."""

    def __init__(self, env=None):
        self.requested: Optional[str] = None
        self._old = {}
        value = (os.environ if env is None else env).get(STOP_AFTER_ENV, "")
        try:
            self._steps_left = int(value) if value else None
        except ValueError:
            raise ValueError(f"{STOP_AFTER_ENV} must be a whole number of steps, "
                             f"not {value!r}") from None
        if self._steps_left is not None and self._steps_left < 1:
            raise ValueError(f"{STOP_AFTER_ENV} must be at least 1, not {value!r}")

    def step_done(self) -> None:
        """Count one finished training step (for ``DEJAVID_STOP_AFTER_STEPS``)."""
        if self._steps_left is None or self.requested:
            return
        self._steps_left -= 1
        if self._steps_left == 0:
            self.requested = STOP_AFTER_ENV

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        tqdm.write(f"{self.requested} received: finishing this step, then writing a checkpoint "
                   f"(send it again to stop at once)")

    def __enter__(self):
        # Python delivers signals to the main thread only, and only it may install handlers:
        # a run in another thread (an estimator fitted in a worker) leaves them alone.
        if threading.current_thread() is not threading.main_thread():
            return self
        for s in (signal.SIGINT, signal.SIGTERM):
            self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
