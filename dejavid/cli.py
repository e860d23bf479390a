"""Shared command-line plumbing of the entry scripts: argument parser, error handling,
run-folder names."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from .config import DEFAULTS
from .errors import MissingDependency


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
    """Run a script's ``main`` and exit with its code.  A user's mistake (ValueError,
    FileNotFoundError, a missing optional dependency) prints ``error: ...`` on stderr
    without a traceback and exits 2; Ctrl-C outside training propagates as usual."""
    try:
        code = main()
    except (ValueError, FileNotFoundError, MissingDependency) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)


def default_run_dir(cfg: dict) -> Path:
    """``output_dir/run_name``, or ``output_dir/<name>-<timestamp>`` without a run name."""
    name = cfg["run_name"] or f"{cfg['name'] or 'dejavid'}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(cfg["output_dir"]) / name


__all__ = ["parser", "parse", "main_guard", "default_run_dir"]
