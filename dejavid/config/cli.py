"""Shared command-line plumbing of the entry scripts: argument parser, error handling,
run-folder names."""
from __future__ import annotations

import argparse
import itertools
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from .files import DEFAULTS
from ..errors import MissingDependency, PeerError, Terminated


def parser(description: str) -> argparse.ArgumentParser:
    """The scripts' parser: ``--config``, ``--no-progress``; any config key as ``--key value``."""
    p = argparse.ArgumentParser(
        description=description,
        epilog="Any config key can be overridden with --key value; keys: " + ", ".join(sorted(DEFAULTS)))
    p.add_argument("--config", help="YAML config (configs/<dataset>.yaml)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def parse(p: argparse.ArgumentParser, argv=None):
    """(known arguments, the rest: ``--key value`` config overrides)."""
    args, rest = p.parse_known_args(argv)
    return args, rest


def main_guard(main: Callable[[], int]) -> None:
    """Run a script's ``main`` and exit with its code, never with a traceback for what the
    user can fix.

    * A user's mistake (ValueError, FileNotFoundError, a missing optional dependency) and
      a failed read or write (OSError: a full disk, a read-only folder) print one
      ``error: ...`` paragraph on stderr and exit 2.
    * Ctrl-C outside training (data check, centroids) prints one line and exits 130;
      SIGTERM there does the same with exit 143 (it raises :class:`dejavid.errors.Terminated`,
      a KeyboardInterrupt, so the same clean-up runs).  The training loop's own handler
      (:class:`dejavid.training.signals.StopRequest`) takes over both signals meanwhile.
    * Under torchrun only rank 0 prints: every rank runs the same checks on the same
      inputs, so the other ranks' copies of the message would only bury it; a rank that
      stops because another one failed (:class:`dejavid.errors.PeerError`) exits 2
      quietly.
    """
    quiet = os.environ.get("RANK", "0") != "0"
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
        # Python raises KeyboardInterrupt on SIGINT only when it started with SIGINT at its
        # default; a process started from a background job of a non-interactive shell
        # inherits it ignored, and would then run on through a Ctrl-C or `kill -INT`.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = main()
    except PeerError:
        _exit(2)
    except (ValueError, FileNotFoundError, MissingDependency) as exc:
        if not quiet:
            print(f"error: {exc}", file=sys.stderr)
        _exit(2)
    except OSError as exc:
        if not quiet:
            where = f" ({exc.filename})" if exc.filename else ""
            print(f"error: cannot read or write a file{where}: {exc.strerror or exc}; free "
                  f"space or pick a writable location and run again", file=sys.stderr)
        _exit(2)
    except KeyboardInterrupt as exc:
        term = isinstance(exc, Terminated)
        if not quiet:
            print(f"interrupted ({'SIGTERM' if term else 'Ctrl-C'})", file=sys.stderr)
        _exit(143 if term else 130)
    _exit(code)


def _exit(code: int) -> None:
    """Exit with ``code``.  A torchrun worker flushes its output and leaves with os._exit:
    at interpreter exit, static destructors of PyTorch's distributed runtime (after
    destroy_process_group) sometimes abort the process ("terminate called without an
    active exception", SIGABRT) after all work is done and written, which torchrun
    reports as a failed run (seen in about 1 of 6 two-rank runs on the CPU machine);
    every file dejavid writes is complete (atomic) before this point."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0 if code is None else code if isinstance(code, int) else 1)
    sys.exit(code)


def _terminate(signum, frame):
    raise Terminated


def default_run_dir(cfg: dict, create: bool = True) -> Path:
    """``output_dir/run_name``, or without a run name a new folder
    ``output_dir/<name>-<timestamp>``: with ``create`` it is made here with an atomic
    ``mkdir``, adding ``-2``, ``-3``, ... when another run took the name first (runs
    started in the same second never share a folder)."""
    if cfg["run_name"]:
        return Path(cfg["output_dir"]) / cfg["run_name"]
    base = Path(cfg["output_dir"]) / f"{cfg['name'] or 'dejavid'}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not create:
        return base
    for n in itertools.count(1):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue


__all__ = ["parser", "parse", "main_guard", "default_run_dir"]
