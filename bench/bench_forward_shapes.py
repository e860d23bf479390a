"""Free-path forward (distances and paths) of the numba backend at eight shapes: the
univariate UCR shapes of the every-series candidate (K 128, T 427, 200 prototypes, with
the 10 % band; the same without it; resampled to K = T = 234 steps) and of one centroid
per class (6 classes, no band), 60 prototypes of 3 and of 6 features, HMDB51's (K 8,
T 30, F 1459, 51 classes) and a mid-size one (K 64, T 64, F 64).  The first three and
the fifth and sixth run in lanes (``dejavid.alignment.numba._use_lanes``).

    python bench/bench_forward_shapes.py [--repeats 5]

Prints the fastest of ``--repeats`` calls per shape (after one warm-up call), batches of
32 samples.  Run it in two checkouts to compare kernel versions on one machine.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dejavid.runtime  # noqa: E402,F401  (before torch and numba, as the entry scripts)
import torch  # noqa: E402

from dejavid.alignment.op import align  # noqa: E402

# (K, T, prototypes, F, band)
SHAPES = [(128, 427, 200, 1, 0.1), (128, 427, 200, 1, None), (234, 234, 200, 1, 0.1),
          (128, 427, 6, 1, None), (100, 100, 60, 3, None), (100, 100, 60, 6, None),
          (8, 30, 51, 1459, None),
          (64, 64, 51, 64, None)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    B = 32
    for K, T, P, F, band in SHAPES:
        x = torch.randn(B * T, F)
        offsets = torch.arange(B + 1) * T
        mu, theta = torch.randn(P, K, F), torch.zeros(P, K, F)
        align(x, offsets, mu, theta, "hvd", backend="numba", band=band)   # compile, warm
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            align(x, offsets, mu, theta, "hvd", backend="numba", band=band)
            best = min(best, time.perf_counter() - t)
        print(f"K {K} T {T} pairs {B}x{P} F {F} band {band}: {best * 1e3:.1f} ms "
              f"(fastest of {args.repeats})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
