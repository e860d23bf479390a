"""Compute (or reuse) the cached per-class DBA centroids of a dataset.

    python compute_centroids.py --config configs/hmdb51.yaml [--key value ...]
"""
from __future__ import annotations

import time

import dejavid.runtime  # noqa: F401  (before torch: OpenMP wait policy, numba vector width)
from dejavid import cli
from dejavid.centroids import load_or_compute_centroids
from dejavid.config import load_config
from dejavid.data import TSEDataset
from dejavid.io import check_writable_dir
from dejavid.settings import index_from_config, settings_from_config


def main(argv=None) -> int:
    args, rest = cli.parse(cli.parser(__doc__.splitlines()[0]), argv)
    cfg = load_config(args.config, rest)
    check_writable_dir(cfg["cache_dir"], "cache_dir")
    t0 = time.time()
    index = index_from_config(cfg, progress=not args.no_progress, log=print)
    settings = settings_from_config(cfg)   # after the data: 'auto' values are resolved now
    train_ds = TSEDataset(index, cfg["train_split"])
    mu, path = load_or_compute_centroids(train_ds, settings.centroids, cfg["cache_dir"],
                                         progress=not args.no_progress)
    print(f"centroids {tuple(mu.shape)} in {path} ({time.time() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    cli.main_guard(main)
