"""numba's 256-bit vs 512-bit code for the CPU kernels, A/B in alternating processes.

    python bench/bench_vector_width.py --pairs 6

Each process imports dejavid with ``DEJAVID_NUMBA_512`` set to ``0`` (LLVM's
default width) or ``1`` (512-bit vectors, see dejavid/runtime/cpu_tuning.py) and times, at
the HMDB51 shape, the local-cost stage, the forward pass (local cost + DP +
backtrack) and forward+backward (medians of ``--repeats`` calls after a warm-up).
The two settings alternate, ``--pairs`` processes each, so that a noisy machine
affects both alike; the table gives every process's figures and the last line the
median speed-up of 512-bit over 256-bit per stage.  Needs an AVX-512 CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SHAPE = (16, 51, 64, 33, 1459)  # B, C, K, T, F (HMDB51)
STAGES = ("local_cost", "forward", "fwd_bwd")


def child(repeats):
    import dejavid.runtime  # noqa: F401  (before torch and numba)
    import numba
    import torch

    from dejavid.alignment import numba as an
    B, C, K, T, F = SHAPE
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B * T, F, generator=g)
    offsets = torch.arange(0, B * T + 1, T)
    mu = torch.randn(C, K, F, generator=g)
    theta = 0.5 * torch.randn(C, K, F, generator=g)
    upstream = torch.randn(B, C, generator=g)

    def fwd_bwd():
        _, paths = an.align_forward_numba(x, offsets, mu, theta, "hv")
        an.path_grads_numba(x, offsets, mu, theta, paths, upstream, False)

    fns = {"local_cost": lambda: an.local_cost_numba(x, offsets, mu, theta),
           "forward": lambda: an.align_forward_numba(x, offsets, mu, theta, "hv"),
           "fwd_bwd": fwd_bwd}
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # JIT / cache load
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    wide = "-prefer-256-bit" in (numba.config.CPU_FEATURES or "").split(",")
    out = {k: statistics.median(v) for k, v in times.items()}
    out["512"] = wide
    print("RESULT " + json.dumps(out), flush=True)


def run(setting, repeats):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    env["DEJAVID_NUMBA_512"] = setting
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child",
                           "--repeats", str(repeats)], env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    sys.stderr.write(proc.stdout + proc.stderr)
    raise RuntimeError(f"child with DEJAVID_NUMBA_512={setting} failed")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=6, help="processes per setting")
    p.add_argument("--repeats", type=int, default=7, help="timed calls per stage and process")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.repeats)
    import llvmlite.binding as llb
    if not llb.get_host_cpu_features().get("avx512f"):
        sys.exit("this CPU has no AVX-512: numba emits the same code for both settings")
    flops = 3 * SHAPE[0] * SHAPE[1] * SHAPE[2] * SHAPE[3] * SHAPE[4]
    print(f"CPU {llb.get_host_cpu_name()}; HMDB51 shape B, C, K, T, F = {SHAPE}; "
          f"medians of {args.repeats} calls per process")
    print(f"{'process':8} {'width':>5} " + " ".join(f"{s + ' ms':>14}" for s in STAGES)
          + f" {'local GF/s':>10}")
    rows = {"0": [], "1": []}
    for i in range(args.pairs):
        for setting in ("0", "1"):
            r = run(setting, args.repeats)
            if r["512"] != (setting == "1"):
                sys.exit(f"DEJAVID_NUMBA_512={setting} did not reach numba's configuration")
            rows[setting].append(r)
            print(f"{i + 1:>3}/{args.pairs:<4} {512 if r['512'] else 256:>5} "
                  + " ".join(f"{1e3 * r[s]:14.1f}" for s in STAGES)
                  + f" {flops / r['local_cost'] / 1e9:10.1f}", flush=True)
    speedups = {s: statistics.median(a[s] for a in rows["0"]) /
                statistics.median(b[s] for b in rows["1"]) for s in STAGES}
    print("512-bit vs 256-bit, ratio of median times: "
          + ", ".join(f"{s} {v:.2f}x" for s, v in speedups.items()))


if __name__ == "__main__":
    main()
