"""Benchmark of the DejaVid alignment: original-style vs reference vs ours.

    python bench/bench_align.py --device cpu --shapes hmdb51,k400 --repeats 3
    python bench/bench_align.py --device cuda

For every shape and method it reports forward (no grad) and forward+backward
(gradients w.r.t. mu and theta; features are frozen data, as in training)
times, the median of ``--repeats`` runs after a warm-up on one sample (JIT
compilation, CUDA context); GFLOP/s (TFLOP/s on CUDA) counting 3 flops per
(b, c, i, j, f) of the local cost; and the peak extra memory of one
forward+backward batch.  The ceiling is the same run's float32 matmul rate
(TF32 disabled on CUDA); the local-cost stage of "ours" is compared with it in
alternation, one matmul then one stage call per round, and the median of the
rounds' ratios is reported (with their min and max).  "ours" is what
``dejavid.alignment.op`` picks on the device: numba on CPU, the CUDA kernels on a GPU
(the run stops if they are not built).

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

import dejavid.runtime  # noqa: F401  (before torch, as the entry scripts: OpenMP wait policy)
import torch

SHAPES = {  # B, C, K, T, F
    "hmdb51": (16, 51, 64, 33, 1459),
    "k400": (16, 400, 64, 33, 1808),
}
# Per-device batch where it differs: 48 videos per GPU, as in the paper's K400 runs.
DEVICE_BATCH = {("cuda", "k400"): 48}
METHODS = ("original", "ref", "ours")
# (device, shape, method) -> batch a slow method is measured on (times scaled to B).
REDUCED_BATCH = {("cpu", "k400", "original"): 2, ("cpu", "k400", "ref"): 2,
                 ("cuda", "k400", "original"): 8}


def shape_of(name, device_type, batch=None):
    """(B, C, K, T, F) of a named shape on a device type, B overridden by ``batch``."""
    B, C, K, T, F = SHAPES[name]
    B = batch or DEVICE_BATCH.get((device_type, name), B)
    return B, C, K, T, F


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
    from dejavid.alignment.op import align, get_backend
    name = "ref" if method == "ref" else get_backend(device).name

    def fn(x, offsets, mu, theta):
        return align(x, offsets, mu, theta, "hv", backend=name)[0]
    return fn, name


def _local_cost_fn(backend_name):
    """fn(x, offsets, mu, theta) running only the backend's local-cost stage, or None.

    For CUDA the packed [C, K, N] kernel the forward pass runs, with the weights
    exp(theta) computed once outside the timed call.
    """
    mod = importlib.import_module(f"dejavid.alignment.{backend_name}")
    if backend_name == "cuda":
        cache = {}

        def stage(x, offsets, mu, theta):
            if "w" not in cache:
                cache["w"] = theta.detach().exp()
            return mod.local_cost_packed_cuda(x, mu.detach(), cache["w"])
        return stage
    return getattr(mod, f"local_cost_{backend_name}", None)


def child(spec):
    """Measure one (shape, method) in this process; prints one JSON line."""
    device = torch.device(spec["device"])
    B, C, K, T, F = spec["shape"]
    fn, name = _method_fn(spec["method"], device)
    if spec["method"] == "ours" and device.type == "cuda" and name != "cuda":
        from dejavid.alignment.op import CUDA_BUILD_COMMAND
        print(f"ERROR the CUDA kernels are not built ('ours' would be {name!r}); "
              f"build them with: {CUDA_BUILD_COMMAND}", flush=True)
        sys.exit(2)
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
                out.update(_paired_local_cost(lambda: lc(x, offsets, mu, theta), device,
                                              3 * B * C * K * T * F, max(spec["repeats"], 5)))
    print("RESULT " + json.dumps(out), flush=True)


def _paired_local_cost(stage, device, flops, rounds):
    """Local-cost stage against the float32 matmul, measured in alternation in this process.

    Each round times one matmul and then one call of the stage (after an untimed one),
    and takes the ratio of their rates; the median of the rounds' ratios is the figure
    reported.  On a noisy machine (shared host, changing clocks) the two sides of a
    ratio then see the same conditions, where a best-of-n ceiling from another moment
    would not.
    """
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    n = 8192 if device.type == "cuda" else 4096
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    stage()  # warm-up
    times, ratios = [], []
    for _ in range(rounds):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        t_mm = time.perf_counter() - t0
        # The matmul's operands evict the stage's inputs from the caches: one untimed
        # call reloads them, so the round times the stage and not the refill.
        stage()
        _sync(device)
        t0 = time.perf_counter()
        stage()
        _sync(device)
        t_lc = time.perf_counter() - t0
        times.append(t_lc)
        ratios.append((flops / t_lc) / (2 * n ** 3 / t_mm))
    return {"local_cost_s": statistics.median(times), "lc_rounds": rounds, "lc_matmul_n": n,
            "lc_ratio": statistics.median(ratios), "lc_ratio_min": min(ratios),
            "lc_ratio_max": max(ratios)}


def matmul_gflops(device, n=None, repeats=5):
    """float32 matmul rate, the machine's ceiling (TF32 disabled on CUDA): the best of
    ``repeats`` runs, so that a ratio to it errs on the low side on a noisy machine."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    n = n or (8192 if device.type == "cuda" else 4096)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9, n


def run_child(spec):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
        if line.startswith("ERROR "):
            sys.exit(line[6:])
    sys.stderr.write(proc.stdout + proc.stderr)
    raise RuntimeError(f"benchmark child failed: {spec}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--shapes", default="hmdb51,k400")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cap", type=float, default=90.0,
                   help="stop repeating a measurement once this many seconds are spent")
    p.add_argument("--batch", type=int, help="batch size B for every shape (default: per shape)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help="comma-separated subset of " + ",".join(METHODS))
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(json.loads(args.child))
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch sees no CUDA device")
    shapes = args.shapes.split(",")
    for s in shapes:
        if s not in SHAPES:
            p.error(f"unknown shape {s!r}; choose from {sorted(SHAPES)}")
    methods = args.methods.split(",")
    if not methods or any(m not in METHODS for m in methods):
        p.error(f"--methods must be a subset of {METHODS}")
    ceiling, n_mm = matmul_gflops(device)
    # TFLOP/s on GPUs, GFLOP/s on CPUs.
    unit, div, prec = ("TF", 1e12, 2) if device.type == "cuda" else ("GF", 1e9, 1)
    ceiling_u = ceiling * 1e9 / div
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"device {device}{gpu}, torch {torch.__version__}, {torch.get_num_threads()} torch "
          f"threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    if device.type == "cpu":
        from dejavid.runtime import cpu_tuning
        print(cpu_tuning.describe())
    tf32 = ", TF32 off" if device.type == "cuda" else ""
    print(f"float32 matmul ceiling ({n_mm}^3, best of 5, same run{tf32}): {ceiling_u:.1f} {unit}LOP/s")
    header = (f"{'shape':7} {'method':15} {'measured on':18} {'fwd s':>8} {'fwd+bwd s':>10} "
              f"{'fwd ' + unit + '/s':>9} {'f+b ' + unit + '/s':>9} {'peak MB':>8} "
              f"{'f+b speedup':>11}")
    headline = None
    for s in shapes:
        B, C, K, T, F = shape_of(s, device.type, args.batch)
        flops = 3 * B * C * K * T * F
        print(f"\n{s}: B {B}, C {C}, K {K}, T {T}, F {F}  "
              f"({flops / 1e9:.2f} GFLOP of local cost per batch)")
        print(header)
        rows = {}
        for m in methods:
            b_run = min(B, REDUCED_BATCH.get((device.type, s, m), B))
            r = run_child({"device": args.device, "shape": [b_run, C, K, T, F], "method": m,
                           "repeats": args.repeats, "cap_s": args.cap})
            scale = B / b_run
            r["fwd_s"] *= scale
            r["fwd_bwd_s"] *= scale
            r["label"] = (f"B={b_run} x{scale:g} scaled" if scale != 1 else f"B={B}") + \
                f" n={r['fwd_bwd_n']}/{r['fwd_n']}"
            rows[m] = r
        base = rows.get("original")
        for m, r in rows.items():
            speedup = f"{base['fwd_bwd_s'] / r['fwd_bwd_s']:10.1f}x" if base else f"{'-':>11}"
            name = r["backend"] if m == "ours" else m
            print(f"{s:7} {name:15} {r['label']:18} {r['fwd_s']:8.4f} {r['fwd_bwd_s']:10.4f} "
                  f"{flops / r['fwd_s'] / div:9.{prec}f} {flops / r['fwd_bwd_s'] / div:9.{prec}f} "
                  f"{r['peak_extra_mb']:8.1f} {speedup}")
        ours = rows.get("ours")
        if ours is None:
            continue
        lc_note = "local-cost stage: not exposed by this backend"
        if "local_cost_s" in ours:
            lc_rate = flops / ours["local_cost_s"] / div
            lc_note = (f"local-cost stage ({ours['backend']}): {ours['local_cost_s']:.4f} s, "
                       f"{lc_rate:.{prec}f} {unit}LOP/s = "
                       f"{100 * ours['lc_ratio']:.0f}% of matmul (median of {ours['lc_rounds']} "
                       f"rounds alternating with a {ours['lc_matmul_n']}^3 matmul; "
                       f"min {100 * ours['lc_ratio_min']:.0f}%, "
                       f"max {100 * ours['lc_ratio_max']:.0f}%)")
        fwd_rate = flops / ours["fwd_s"] / div
        fwd_note = (f"forward ({ours['backend']}): {fwd_rate:.{prec}f} {unit}LOP/s = "
                    f"{100 * fwd_rate / ceiling_u:.0f}% of matmul")
        print(lc_note)
        print(fwd_note)
        if headline is None:
            vs = (f" vs original-style {base['fwd_bwd_s']:.2f} s = "
                  f"{base['fwd_bwd_s'] / ours['fwd_bwd_s']:.0f}x faster" if base else "")
            headline = (f"HEADLINE {s} fwd+bwd: {ours['backend']} {ours['fwd_bwd_s']:.4f} s{vs}; "
                        f"peak extra {ours['peak_extra_mb']:.0f} MB; {lc_note}")
    if headline:
        print()
        print(headline)


if __name__ == "__main__":
    main()
