"""Data-loading costs with and without the packed feature store (issue #17).

    python bench/bench_data.py --root /tmp/dejavid_bench_data            # both sets
    python bench/bench_data.py --root /tmp/dejavid_bench_data --sets hmdb51 --keep

Two synthetic data sets in the users' format (one ``torch.save`` file per video,
the three id2* pickles), written under ``--root`` (deleted afterwards unless
``--keep``):

* ``hmdb51``: 6766 videos, F 1459, T uniform in 17..33 (about 1.0 GB float32);
* ``k400``:  240 000 videos (Kinetics-400's count), F 64, T uniform in 17..33.

Splits 70 / 20 / 10 % train / val / test.  For each set it prints:

* ``start, files``: ``load_index`` with ``store: false`` (today: opens and hashes
  every file on every start);
* ``first build``: ``load_index`` with the store, in an empty cache folder;
* ``second start``: ``load_index`` again (the store is current: ``os.stat`` only);
* ``epoch data``: passes over the training split in the training order
  (``epoch_batches``, batch 384, ``collate_packed``, ``num_workers`` 0, no model),
  through today's per-file loader and through the store; the median of
  ``--repeats`` passes (epochs 0, 1, 2, ...) and each pass are printed.

All files are in the page cache (just written), as in a second epoch.  The
``float16`` rows repeat build and epoch with ``store_dtype: float16`` (hmdb51 only).
Figures are wall-clock seconds of one run; the machine's load is printed.
"""
from __future__ import annotations

import argparse
import os
import pickle
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dejavid.runtime  # noqa: E402,F401  (before torch, as the entry scripts)
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from dejavid.config.files import load_config  # noqa: E402
from dejavid.training.batching import epoch_batches, make_loader  # noqa: E402
from dejavid.data.dataset import TSEDataset  # noqa: E402
from dejavid.config.settings import index_from_config  # noqa: E402

SETS = {
    "hmdb51": {"videos": 6766, "F": 1459, "T": (17, 33), "C": 51},
    "k400": {"videos": 240_000, "F": 64, "T": (17, 33), "C": 400},
}
SPLIT_SHARES = (("train", 0.7), ("val", 0.2), ("test", 0.1))
BATCH = 384


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def write_set(folder: Path, spec: dict, seed: int = 0) -> dict:
    """The four inputs of one synthetic set under ``folder``; returns the config paths."""
    feats = folder / "feats"
    done = folder / "complete"
    paths = {"id2feats": str(feats), "id2splits": str(folder / "id2splits.pkl"),
             "id2labels": str(folder / "id2labels.pkl"), "id2fname": str(folder / "id2fname.pkl")}
    if done.exists():
        return paths
    feats.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    n = spec["videos"]
    lengths = torch.randint(spec["T"][0], spec["T"][1] + 1, (n,), generator=g).tolist()
    splits, labels, fnames = {}, {}, {}
    bounds, acc = [], 0.0
    for name, share in SPLIT_SHARES:
        acc += share
        bounds.append((round(acc * n), name))
    for v in tqdm(range(n), desc=f"writing {folder.name}", unit="file", leave=False):
        vid = f"v{v:06d}"
        fnames[vid] = f"{vid}.pt"
        labels[vid] = v % spec["C"]
        splits[vid] = next(name for b, name in bounds if v < b)
        torch.save(torch.randn(lengths[v], spec["F"], generator=g), feats / fnames[vid])
    for key, obj in (("id2splits", splits), ("id2labels", labels), ("id2fname", fnames)):
        with open(paths[key], "wb") as fh:
            pickle.dump(obj, fh)
    done.touch()
    return paths


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def epoch_data_seconds(index, split: str, repeats: int) -> tuple[float, str]:
    """Passes over ``split`` in training order through the real loader, no model:
    (median seconds, 'each pass' text).  Pass ``e`` uses epoch ``e``'s batch order."""
    ds = TSEDataset(index, split, progress=False)
    times = []
    for epoch in range(repeats):
        batches = epoch_batches(len(ds), BATCH, seed=0, epoch=epoch, shuffle=True)
        t0 = time.perf_counter()
        steps = 0
        for batch in make_loader(ds, batches, num_workers=0):
            steps += int(batch.x.shape[0] > 0)
        times.append(time.perf_counter() - t0)
        assert steps == len(batches)
    return statistics.median(times), ", ".join(f"{t:.2f}" for t in times)


def bench_set(name: str, root: Path, keep: bool, repeats: int) -> None:
    spec = SETS[name]
    folder = root / name
    print(f"\n== {name}: {spec['videos']} videos, F {spec['F']}, T {spec['T'][0]}..{spec['T'][1]} "
          f"({load()})", flush=True)
    paths, secs = timed(lambda: write_set(folder, spec))
    size = sum(f.stat().st_size for f in (folder / "feats").iterdir())
    print(f"data written: {size / 2**30:.2f} GiB in {secs:.1f} s", flush=True)
    cache = folder / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    base = {**paths, "cache_dir": str(cache)}

    def cfg(**kw):
        return load_config(None, base={**base, **kw})

    plain, t_plain = timed(lambda: index_from_config(cfg(store=False), progress=False))
    print(f"start, files (store: false):  {t_plain:8.2f} s  "
          f"({1e3 * t_plain / spec['videos']:.3f} ms/video)", flush=True)
    _, t_build = timed(lambda: index_from_config(cfg(), progress=False))
    print(f"first build (float32):         {t_build:8.2f} s", flush=True)
    stored, t_again = timed(lambda: index_from_config(cfg(), progress=False))
    print(f"second start (store current):  {t_again:8.2f} s  ({load()})", flush=True)
    assert stored.digests == plain.digests
    n_train = len(plain.rows("train"))
    t_files, each = epoch_data_seconds(plain, "train", repeats)
    print(f"epoch data, per-file loader:   {t_files:8.2f} s  (median; passes {each}; "
          f"{n_train} videos)", flush=True)
    t_store, each = epoch_data_seconds(stored, "train", repeats)
    print(f"epoch data, store (float32):   {t_store:8.2f} s  (median; passes {each}; "
          f"{t_files / t_store:.1f}x faster)", flush=True)
    if name == "hmdb51":
        _, t_b16 = timed(lambda: index_from_config(cfg(store_dtype="float16"), progress=False))
        half = index_from_config(cfg(store_dtype="float16"), progress=False)
        print(f"first build (float16):         {t_b16:8.2f} s", flush=True)
        t_half, each = epoch_data_seconds(half, "train", repeats)
        print(f"epoch data, store (float16):   {t_half:8.2f} s  (median; passes {each}; "
              f"{t_files / t_half:.1f}x faster)", flush=True)
    store_bytes = sum(f.stat().st_size for d in cache.iterdir() for f in d.iterdir())
    print(f"store size on disk: {store_bytes / 2**30:.2f} GiB ({load()})", flush=True)
    if not keep:
        shutil.rmtree(folder)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="/tmp/dejavid_bench_data",
                   help="where the synthetic sets are written (needs ~4 GiB free)")
    p.add_argument("--sets", default="hmdb51,k400", help="comma-separated: hmdb51, k400")
    p.add_argument("--keep", action="store_true", help="keep the data (a rerun reuses it)")
    p.add_argument("--repeats", type=int, default=3,
                   help="passes per loader for the epoch figures (the median is printed)")
    args = p.parse_args(argv)
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    bad = [s for s in names if s not in SETS]
    if bad:
        raise ValueError(f"unknown set(s) {', '.join(bad)}; choose from {', '.join(SETS)}")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {load()}")
    for name in names:
        bench_set(name, Path(args.root), args.keep, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
