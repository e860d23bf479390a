"""Benchmark of the DejaVid alignment: original-style vs reference vs ours.

    python bench/bench_align.py --device cpu --shapes hmdb51,k400 --repeats 3

For every shape and method it reports forward (no grad) and forward+backward
(gradients w.r.t. mu and theta; features are frozen data, as in training)
times, the median of ``--repeats`` runs after a warm-up on one sample (JIT
compilation, CUDA context); GFLOP/s counting 3 flops per (b, c, i, j, f) of the
local cost; and the peak extra memory of one forward+backward batch.

Each method runs in its own subprocess so that memory figures do not mix.  On
CPU the peak is the kernel's high-water mark of resident memory (VmHWM, reset
through /proc/self/clear_refs just before the batch) minus the resident memory
just before it, so it sees torch, numpy and numba allocations alike.  On CUDA it
is torch.cuda.max_memory_allocated minus the allocation before the batch.

Slow methods at large shapes are measured on a smaller batch and their times
scaled linearly in B (both loop over samples); such rows say so.  The last line
is the headline ratio at the first shape.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time

import torch

SHAPES = {  # B, C, K, T, F
    "hmdb51": (16, 51, 64, 33, 1459),
    "k400": (16, 400, 64, 33, 1808),
}
METHODS = ("original", "ref", "ours")
# (device, shape) -> batch the slow methods are measured on (times scaled to B).
REDUCED_BATCH = {("cpu", "k400"): 2}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device, repeats, cap_s):
    """Median wall time of up to ``repeats`` calls, stopping once ``cap_s`` is spent."""
    times = []
    while len(times) < repeats and sum(times) < cap_s:
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def _rss_bytes(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _inputs(B, C, K, T, F, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B * T, F, generator=g)
    offsets = torch.arange(B + 1, dtype=torch.int64) * T
    mu = torch.randn(C, K, F, generator=g)
    theta = 0.5 * torch.randn(C, K, F, generator=g)
    upstream = torch.randn(B, C, generator=g)
    mu, theta = (t.to(device).requires_grad_() for t in (mu, theta))
    return x.to(device), offsets.to(device), mu, theta, upstream.to(device)


def _method_fn(method, device):
    """dist = fn(x, offsets, mu, theta) for one method; also the backend's name."""
    if method == "original":
        from original_style import original_style_align
        return original_style_align, "original-style"
    from dejavid.align import align, get_backend
    name = "ref" if method == "ref" else get_backend(device).name

    def fn(x, offsets, mu, theta):
        return align(x, offsets, mu, theta, "hv", backend=name)[0]
    return fn, name


def _local_cost_fn(backend_name):
    """local_cost_<name> of the backend's module, when it has one."""
    mod = importlib.import_module(f"dejavid.align_{backend_name}")
    return getattr(mod, f"local_cost_{backend_name}", None)


def child(spec):
    """Measure one (shape, method) in this process; prints one JSON line."""
    device = torch.device(spec["device"])
    B, C, K, T, F = spec["shape"]
    fn, name = _method_fn(spec["method"], device)
    x, offsets, mu, theta, upstream = _inputs(B, C, K, T, F, device)

    def forward():
        with torch.no_grad():
            fn(x, offsets, mu, theta)

    def forward_backward():
        mu.grad = theta.grad = None
        fn(x, offsets, mu, theta).backward(upstream)

    # Warm-up on one sample: JIT compilation, caches, CUDA context.
    with torch.no_grad():
        fn(x[:T], offsets[:2], mu, theta)
    out = {"backend": name}
    # Peak extra memory of one forward+backward batch (also its first timing).
    mu.grad = theta.grad = None
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _rss_bytes("VmRSS")
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS
    t0 = time.perf_counter()
    forward_backward()
    _sync(device)
    first = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _rss_bytes("VmHWM")
    out["peak_extra_mb"] = (peak - base) / 2**20
    cap = spec["cap_s"]
    if spec["repeats"] > 1 and first < cap:
        t_fb, n_fb = _timed(forward_backward, device, spec["repeats"], cap)
    else:
        t_fb, n_fb = first, 1
    out["fwd_bwd_s"], out["fwd_bwd_n"] = t_fb, n_fb
    out["fwd_s"], out["fwd_n"] = _timed(forward, device, spec["repeats"], cap)
    if spec["method"] == "ours":
        lc = _local_cost_fn(name)
        if lc is not None:
            with torch.no_grad():
                lc(x, offsets, mu, theta)  # warm-up
                out["local_cost_s"], _ = _timed(lambda: lc(x, offsets, mu, theta), device,
                                                spec["repeats"], cap)
    print("RESULT " + json.dumps(out), flush=True)


def matmul_gflops(device, n=4096, repeats=5):
    """float32 matmul rate, the machine's ceiling (TF32 disabled on CUDA)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    t, _ = _timed(lambda: a @ b, device, repeats, 1e9)
    return 2 * n ** 3 / t / 1e9


def run_child(spec):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    sys.stderr.write(proc.stdout + proc.stderr)
    raise RuntimeError(f"benchmark child failed: {spec}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--shapes", default="hmdb51,k400")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cap", type=float, default=90.0,
                   help="stop repeating a measurement once this many seconds are spent")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(json.loads(args.child))
    device = torch.device(args.device)
    shapes = args.shapes.split(",")
    for s in shapes:
        if s not in SHAPES:
            p.error(f"unknown shape {s!r}; choose from {sorted(SHAPES)}")
    ceiling = matmul_gflops(device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    print(f"float32 matmul ceiling (4096^3, same run): {ceiling:.1f} GFLOP/s")
    header = (f"{'shape':7} {'method':15} {'measured on':18} {'fwd s':>8} {'fwd+bwd s':>10} "
              f"{'fwd GF/s':>9} {'f+b GF/s':>9} {'peak MB':>8} {'f+b speedup':>11}")
    headline = None
    for s in shapes:
        B, C, K, T, F = SHAPES[s]
        flops = 3 * B * C * K * T * F
        print(f"\n{s}: B {B}, C {C}, K {K}, T {T}, F {F}  "
              f"({flops / 1e9:.2f} GFLOP of local cost per batch)")
        print(header)
        rows = {}
        for m in METHODS:
            b_run = B if m == "ours" else REDUCED_BATCH.get((device.type, s), B)
            r = run_child({"device": args.device, "shape": [b_run, C, K, T, F], "method": m,
                           "repeats": args.repeats, "cap_s": args.cap})
            scale = B / b_run
            r["fwd_s"] *= scale
            r["fwd_bwd_s"] *= scale
            r["label"] = (f"B={b_run} x{scale:g} scaled" if scale != 1 else f"B={B}") + \
                f" n={r['fwd_bwd_n']}/{r['fwd_n']}"
            rows[m] = r
        for m, r in rows.items():
            speedup = rows["original"]["fwd_bwd_s"] / r["fwd_bwd_s"]
            name = r["backend"] if m == "ours" else m
            print(f"{s:7} {name:15} {r['label']:18} {r['fwd_s']:8.3f} {r['fwd_bwd_s']:10.3f} "
                  f"{flops / r['fwd_s'] / 1e9:9.1f} {flops / r['fwd_bwd_s'] / 1e9:9.1f} "
                  f"{r['peak_extra_mb']:8.1f} {speedup:10.1f}x")
        ours = rows["ours"]
        lc_note = "local-cost stage: not exposed by this backend"
        if "local_cost_s" in ours:
            lc_rate = flops / ours["local_cost_s"] / 1e9
            lc_note = (f"local-cost stage ({ours['backend']}): {ours['local_cost_s']:.3f} s, "
                       f"{lc_rate:.1f} GFLOP/s = {100 * lc_rate / ceiling:.0f}% of matmul")
        print(lc_note)
        if headline is None:
            headline = (f"HEADLINE {s} fwd+bwd: {ours['backend']} {ours['fwd_bwd_s']:.3f} s vs "
                        f"original-style {rows['original']['fwd_bwd_s']:.2f} s = "
                        f"{rows['original']['fwd_bwd_s'] / ours['fwd_bwd_s']:.0f}x faster; "
                        f"peak extra {ours['peak_extra_mb']:.0f} MB; {lc_note}")
    print()
    print(headline)


if __name__ == "__main__":
    main()
