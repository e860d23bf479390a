"""Time the centroid initialisation (medoid + DBA) at the HMDB51 shape.

    python bench/bench_centroids.py [--classes 51] [--samples 50] [--K 64] [--F 1459]
                                    [--iters 100] [--backend auto]

Synthetic data of the real sizes (videos are already resampled to K steps, as
compute_centroids does).  Reports two figures: all ``--iters`` DBA iterations
forced, and the product's behaviour, which stops once the paths no longer change.
"""
from __future__ import annotations

import argparse
import platform
import time

import dejavid.runtime  # noqa: F401  (before torch and numba, as the entry scripts)
import torch

from dejavid.alignment.op import get_backend
from dejavid.model.centroids import dba, medoid_index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=51)
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--K", type=int, default=64)
    ap.add_argument("--F", type=int, default=1459)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--backend", default="auto")
    args = ap.parse_args()
    be = get_backend("cpu", args.backend).name
    g = torch.Generator().manual_seed(0)
    # warm-up (JIT compilation) on a tiny problem
    tiny = torch.randn(3, 4, args.F, generator=g)
    dba(tiny, tiny[medoid_index(tiny, "hv", be)], "hv", 2, be)

    t_med = t_forced = t_product = 0.0
    for c in range(args.classes):
        base = torch.randn(args.K, args.F, generator=g)
        s = base + 0.5 * torch.randn(args.samples, args.K, args.F, generator=g)
        t0 = time.perf_counter()
        start = s[medoid_index(s, "hv", be)]
        t1 = time.perf_counter()
        dba(s, start, "hv", args.iters, be, skip_converged=False)
        t2 = time.perf_counter()
        dba(s, start, "hv", args.iters, be, skip_converged=True)
        t3 = time.perf_counter()
        t_med, t_forced, t_product = t_med + t1 - t0, t_forced + t2 - t1, t_product + t3 - t2
        print(f"class {c + 1}/{args.classes}: medoid {t1 - t0:.2f} s, {args.iters} DBA iterations "
              f"{t2 - t1:.2f} s, until converged {t3 - t2:.2f} s", flush=True)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"backend {be}")
    from dejavid.runtime import cpu_tuning
    print(cpu_tuning.describe())
    print(f"shape: {args.classes} classes x {args.samples} samples x K {args.K} x F {args.F}")
    print(f"medoids {t_med:.1f} s; DBA {args.iters} iterations forced {t_forced:.1f} s; "
          f"DBA until converged {t_product:.1f} s")
    print(f"total with {args.iters} forced iterations: {t_med + t_forced:.1f} s "
          f"({(t_med + t_forced) / 60:.2f} min); as compute_centroids runs: {t_med + t_product:.1f} s")


if __name__ == "__main__":
    main()
