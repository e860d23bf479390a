"""Compute (or reuse) the cached per-class DBA centroids of a dataset.

    python compute_centroids.py --config configs/hmdb51.yaml [--key value ...]
"""
from __future__ import annotations

import sys
import time

from dejavid import cli
from dejavid.centroids import load_or_compute_centroids
from dejavid.config import load_config, step_pattern
from dejavid.data import load_index


def main(argv=None) -> int:
    args, rest = cli.parse(cli.parser(__doc__.splitlines()[0]), argv)
    cfg = load_config(args.config, rest)
    t0 = time.time()
    index = load_index(cfg, progress=not args.no_progress)
    mu, path = load_or_compute_centroids(index, cfg, step_pattern(cfg), cfg["backend"],
                                         progress=not args.no_progress)
    print(f"centroids {tuple(mu.shape)} in {path} ({time.time() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
