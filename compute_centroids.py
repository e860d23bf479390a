"""Compute (or reuse) the cached per-class DBA centroids of a dataset.

    python compute_centroids.py --config configs/hmdb51.yaml [--key value ...]
    python compute_centroids.py --config configs/hmdb51.yaml --build-store   # the store only
"""
from __future__ import annotations

import time

import dejavid.runtime  # noqa: F401  (before torch: OpenMP wait policy, numba vector width)
from dejavid.config import cli
from dejavid.model.centroids import load_or_compute_centroids
from dejavid.config.files import load_config
from dejavid.data.dataset import TSEDataset
from dejavid.io import check_writable_dir
from dejavid.config.settings import index_from_config, settings_from_config


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
    check_writable_dir(cfg["cache_dir"], "cache_dir")
    t0 = time.time()
    index = index_from_config(cfg, progress=not args.no_progress, verify=args.verify_data,
                              log=print)
    if args.build_store:
        print(f"feature store {index.store.path} is complete ({len(index.ids)} videos, "
              f"{index.store.dtype}; {time.time() - t0:.1f} s)")
        return 0
    settings = settings_from_config(cfg)   # after the data: 'auto' values are resolved now
    train_ds = TSEDataset(index, cfg["train_split"])
    mu, path = load_or_compute_centroids(train_ds, settings.centroids, cfg["cache_dir"],
                                         progress=not args.no_progress)
    print(f"centroids {tuple(mu.shape)} in {path} ({time.time() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    cli.main_guard(main)
