"""The estimator in a plain user program against the script's process settings.

    python bench/bench_library.py --pairs 3

Times ``DejaVidClassifier(num_epochs=30).fit`` on aeon's JapaneseVowels (270 training
series, 12 features) in fresh processes that alternate between two starts:

    script    ``import dejavid.runtime`` first, as train_dejavid.py does
    library   ``import torch`` first, then ``from dejavid import DejaVidClassifier``:
              what a user's program does, with no dejavid import-order rule

Each process fits twice and reports the second fit (numba's compilation and the
centroid computation are the same in both starts and are excluded: the first fit pays
them), then the test accuracy.  The last line gives the median library/script ratio.
Alternating processes keep a loaded machine's noise on both sides alike.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)   # this checkout's dejavid (nothing of it is imported here)


def child(start: str, epochs: int) -> None:
    if start == "script":
        import dejavid.runtime  # noqa: F401  (before torch, as the scripts)
    import numpy as np
    import torch  # noqa: F401  (a user's program has usually loaded torch already)
    from aeon.datasets import load_japanese_vowels

    from dejavid import DejaVidClassifier

    def part(split):
        X, y = load_japanese_vowels(split=split)
        return [np.asarray(x, dtype=np.float32) for x in X], y   # aeon: [F, T] each
    (Xtr, ytr), (Xte, yte) = part("train"), part("test")
    times = []
    for _ in range(2):
        clf = DejaVidClassifier(num_epochs=epochs, layout="nct", device="cpu")
        t0 = time.perf_counter()
        clf.fit(Xtr, ytr)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"start": start, "first_fit_s": times[0], "fit_s": times[1],
                      "test_top1": clf.score(Xte, yte)}))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--child", choices=("script", "library"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.epochs)
        return 0
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY",
                                                            "THP_MEM_ALLOC_ENABLE")}
    rows = []
    for _ in range(args.pairs):
        for start in ("script", "library"):
            out = subprocess.run([sys.executable, __file__, "--child", start, "--epochs",
                                  str(args.epochs)], env=env, cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            print(f"{row['start']:8s} fit {row['fit_s']:6.2f} s (first fit "
                  f"{row['first_fit_s']:6.2f} s)  test top-1 {row['test_top1']:.4f}", flush=True)
    script = [r["fit_s"] for r in rows if r["start"] == "script"]
    library = [r["fit_s"] for r in rows if r["start"] == "library"]
    ratios = [b / a for a, b in zip(script, library)]
    print(f"median fit: script {statistics.median(script):.2f} s, library "
          f"{statistics.median(library):.2f} s; library / script {statistics.median(ratios):.2f}x "
          f"(per pair: {', '.join(f'{r:.2f}' for r in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
