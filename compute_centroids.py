"""Compute (or reuse) the cached per-class DBA centroids of a dataset.

    python compute_centroids.py --config configs/hmdb51.yaml [--key value ...]
    python compute_centroids.py --config configs/hmdb51.yaml --build-store   # the store only
"""
from __future__ import annotations

import sys
import time

from dejavid import cli
from dejavid.centroids import load_or_compute_centroids
from dejavid.config import load_config, step_pattern
from dejavid.data import load_index


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--build-store", action="store_true",
                   help="only build (or bring up to date) the feature store, no centroids")
    p.add_argument("--verify-data", action="store_true",
                   help="re-read every feature file and compare it with the feature store")
    args, rest = cli.parse(p, argv)
    cfg = load_config(args.config, rest)
    if args.build_store and not cfg["store"]:
        raise ValueError("--build-store with store: false; drop one of them")
    t0 = time.time()
    index = load_index(cfg, progress=not args.no_progress, verify=args.verify_data)
    if args.build_store:
        print(f"feature store {index.store.path} is complete ({len(index.ids)} videos, "
              f"{index.store.dtype}; {time.time() - t0:.1f} s)")
        return 0
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
