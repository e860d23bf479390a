"""How tune: cv's criterion chooses on data sets that bench_accuracy.py never reads.

    python bench/bench_tune_criterion.py [--datasets GunPoint,...] [--seeds 0,1,2] [--keep-band]

Per data set (aeon's wheel, official splits; a name with -crop or -tile has every series
changed by that rule of bench_accuracy.py, seeded as there) and seed: one cross-validation of
dejavid.training.tune.choose_by_cv on the training split, then a fit on the whole
training split of the candidate each criterion picks (CRITERIA: the one in use, the
lowest held-out log-loss among the candidates whose top-1 is within one standard error of
the best; the lowest log-loss; the lowest log-loss at the best scale of the logits; the
lowest Brier score; the best top-1; the first candidate within one standard error of the
best top-1, the one-standard-error rule of the simplest) and of the configured settings
(candidate 0), each scored on the test split.  Prints one line per seed, then the means per data set.
``--keep-band`` scores the grid with its band on variable-length sets too.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dejavid.runtime  # noqa: E402,F401  (before torch and numba, as the entry scripts)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dejavid.config.settings import TrainSettings  # noqa: E402
from dejavid.data.arrays import ArrayDataset, index_from_arrays  # noqa: E402
from dejavid.data.standardize import statistics  # noqa: E402
from dejavid.training import tune  # noqa: E402
from dejavid.training.engine import evaluate  # noqa: E402
from dejavid.training.run import fit  # noqa: E402
from bench_accuracy import load_dataset  # noqa: E402

UNSEEN = ("GunPoint", "BasicMotions", "PickupGestureWiimoteZ")
# The same three with bench_accuracy.py's length rules (variable lengths; GunPoint has two
# classes): the default list.
VARIANTS = ("GunPoint-crop", "GunPoint-tile", "BasicMotions-crop", "BasicMotions-tile",
            "PickupGestureWiimoteZ-crop", "PickupGestureWiimoteZ-tile")
CRITERIA = ("log_loss_within_se", "log_loss", "scaled_log_loss", "brier", "top1",
            "simplest_within_se")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(UNSEEN + VARIANTS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--folds", type=int, default=tune.TUNE_FOLDS,
                    help="folds of the choice (default: TUNE_FOLDS, as tune_folds' default)")
    ap.add_argument("--keep-band", action="store_true",
                    help="score the grid with its band on variable lengths too (the rule "
                         "before dejavid.training.tune.for_lengths)")
    args = ap.parse_args(argv)
    quiet = lambda *a, **k: None  # noqa: E731
    if args.keep_band:
        tune.for_lengths = lambda grid, lengths: tuple(grid)
    table = {}   # data set -> criterion -> test top-1 per seed ("as configured" too)
    for name in args.datasets.split(","):
        # (GunPoint-crop, PickupGestureWiimoteZ-tile: bench_accuracy's length rules)
        Xtr, ytr, Xte, yte = load_dataset(name)
        values = sorted(set(ytr))
        codes = np.array([values.index(v) for v in ytr])
        train = [torch.from_numpy(np.ascontiguousarray(x)) for x in Xtr]
        test = [torch.from_numpy(np.ascontiguousarray(x)) for x in Xte]
        index, tensors = index_from_arrays(train + test, list(ytr) + list(yte),
                                           label_values=values,
                                           split=["train"] * len(train) + ["test"] * len(test))
        index.feature_stats = statistics(train)
        tr, te = ArrayDataset(index, tensors, "train"), ArrayDataset(index, tensors, "test")
        for seed in map(int, args.seeds.split(",")):
            s = TrainSettings().resolved([len(x) for x in train])
            s = replace(s, loop=replace(s.loop, seed=seed))
            res = tune.choose_by_cv(train, codes, values, s, True, folds=args.folds, log=quiet)
            picks = {c: res.chosen_by(c) for c in CRITERIA}
            acc = {}
            for g in sorted({*picks.values(), 0}):
                cand = tune.candidate_settings(s, res.grid[g], [len(x) for x in train])
                run = fit(tr, None, cand, device="cpu", progress=False, log=quiet)
                acc[g] = evaluate(run.model, te, s.loop, torch.device("cpu"),
                                  progress=False)["top1"]
            row = table.setdefault(name, {})
            for c, g in [*picks.items(), ("as configured", 0)]:
                row.setdefault(c, []).append(100 * acc[g])
            print(f"{name} seed {seed}: " + " | ".join(
                f"by {c} candidate {g} {100 * acc[g]:.2f}" for c, g in picks.items())
                + f" | as configured {100 * acc[0]:.2f}", flush=True)
    cols = [*CRITERIA, "as configured"]
    print("\nmean test top-1 over the seeds" + (" (--keep-band)" if args.keep_band else ""))
    print("| data set | " + " | ".join(cols) + " |")
    print("| --- |" + " ---: |" * len(cols))
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{np.mean(row[c]):.2f}" for c in cols) + " |")
    gains = {c: [np.mean(row[c]) - np.mean(row["as configured"]) for row in table.values()]
             for c in CRITERIA}
    print("| mean gain over as configured | " + " | ".join(
        f"{np.mean(gains[c]):+.2f}" for c in CRITERIA) + " | |")
    print("| worst set against as configured | " + " | ".join(
        f"{np.min(gains[c]):+.2f}" for c in CRITERIA) + " | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
