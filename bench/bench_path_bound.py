"""How small can (path cost + path gradients) / forward be?  Counted from the numba code.

    python bench/bench_path_bound.py                 # K 8, T 33 (the HMDB51 shape)
    python bench/bench_path_bound.py --K 64 --T 33

Issue #20 asks for path cost + gradients <= 1/3 of the forward at K = 8.  This
script compiles the three numba kernels for the layout training uses (C-contiguous
rows, float32, fastmath as in the module), takes the hottest loop of each (the
basic block with the most vector instructions) and counts its vector arithmetic
instructions per cell and vector of features, a cell being one (centroid step,
sample step) pair; every kernel takes exactly one absolute value (``vandps``) per
cell and vector, which is what the count is divided by.  Loads, stores, moves and
broadcasts are not counted, so the figures favour the path kernels (the forward
reuses each loaded x vector for four centroid rows from registers; a path cell
cannot).

With those counts, and with the path kernels granted the forward's rate of
operations per second, the ratio is at least

    (K + T - 1) / (K * T)  x  (ops_cost + ops_grads) / ops_forward

because a fixed path has K + T - 1 cells per pair (``hv``) against the forward's
K * T, and the gradient pass cannot start before the loss (it needs g = dL/d dist)
nor reuse the cost pass's work without storing a [B, C*K, F] tensor per step.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dejavid.runtime  # noqa: E402,F401  (before numba, as the entry scripts)
import numba  # noqa: E402
import numpy as np  # noqa: E402

from dejavid.alignment import numba as an  # noqa: E402

ARITH = re.compile(r"^v(sub|add|and|andn|or|xor|fmadd\d*|fnmadd\d*|fmsub\d*|mul|max|min|cmp\w*|"
                   r"blendm|blendv)ps\b")


def hottest_block(fn) -> Counter:
    """Instruction counts of the hottest inner loop: of the basic blocks that jump back
    to themselves (a loop body in one block) and take absolute values (``vandps``),
    the one with the most packed-vector instructions."""
    asm = fn.inspect_asm(fn.signatures[-1])
    best: Counter = Counter()
    for block in re.split(r"\n(?=\.LBB\S+:)", asm):
        lines = [ln.strip() for ln in block.splitlines()]
        label = lines[0].rstrip(":")
        if not any(ln.startswith("j") and ln.split()[-1] == label for ln in lines[1:]):
            continue
        ops = Counter()
        for line in lines[1:]:
            if line and not line.startswith((".", "#")) and re.search(r"%[yz]mm", line):
                ops[line.split()[0]] += 1
        if ops["vandps"] and sum(ops.values()) > sum(best.values()):
            best = ops
    return best


def per_cell(ops: Counter) -> tuple[float, str]:
    """Vector arithmetic instructions per cell and vector (cells = vandps count)."""
    cells = ops.get("vandps", 0)
    if cells == 0:
        raise RuntimeError(f"no vandps in the hottest block: {dict(ops)}")
    arith = {k: v for k, v in ops.items() if ARITH.match(k)}
    return sum(arith.values()) / cells, ", ".join(f"{k} {v}" for k, v in sorted(arith.items()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--K", type=int, default=8, help="centroid steps")
    p.add_argument("--T", type=float, default=33.0, help="mean sample length")
    p.add_argument("--F", type=int, default=1459, help="features")
    args = p.parse_args(argv)
    F, K = args.F, 8
    W = an._row_width(F)
    T = 33
    x = np.zeros((T, W), np.float32)
    mu = np.zeros((K, W), np.float32)
    D = np.zeros((K, T), np.float32)
    # fresh, uncached builds of the module's kernels (numba cannot show cached code)
    fwd, cost, grads = (numba.njit(nogil=True, fastmath=an._FAST)(k.py_func)
                        for k in (an._local_cost_pair, an._run_cost, an._run_grads))
    fwd(x, mu, mu, D)                        # compiled for the layout training uses
    m = np.zeros(F, np.float32)
    cost(x, 0, 9, m, m)
    grads(x, 0, 9, m, np.float32(1), m.copy(), m.copy())
    counts = {}
    for name, fn in (("forward (local cost)", fwd), ("path cost", cost),
                     ("path gradients", grads)):
        counts[name], detail = per_cell(hottest_block(fn))
        print(f"{name:22s} {counts[name]:5.2f} vector ops per cell  ({detail})")
    rho = (args.K + args.T - 1) / (args.K * args.T)
    f, c, g = counts.values()
    print(f"path cells / forward cells at K {args.K}, T {args.T:g}: {rho:.3f}")
    print(f"lower bound on (path cost + gradients) / forward at the forward's op rate: "
          f"{rho * (c + g) / f:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
