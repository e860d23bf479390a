"""The defaults two ways on the demo split: train_dejavid.py with configs/default.yaml
against DejaVidClassifier() (no arguments), on the same files.

    python bench/bench_defaults.py [--data data/japanese_vowels]

Writes the demo data (prepare_demo.py) if it is missing, runs the script in-process
with the demo's four data paths on top of configs/default.yaml, then fits the estimator
with its defaults on the same training split (read through load_index, so both see the
same series) and scores it on the same validation split.  Prints both top-1 values and
their difference in points; the defaults are one set (tests/test_defaults.py), so the
two should agree up to float summation order.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dejavid.runtime  # noqa: E402,F401  (before torch, as the scripts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT / "data" / "japanese_vowels"))
    args = p.parse_args(argv)
    data = Path(args.data)
    import prepare_demo
    import train_dejavid
    from dejavid import DejaVidClassifier, load_index
    if not (data / "id2splits.pkl").is_file():
        prepare_demo.main(["--out", str(data)])
    paths = {"id2feats": data, "id2splits": data / "id2splits.pkl",
             "id2labels": data / "id2labels.pkl", "id2fname": data / "id2fname.pkl"}
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--config", str(ROOT / "configs" / "default.yaml"), "--no-progress",
                "--cache_dir", f"{tmp}/cache", "--output_dir", f"{tmp}/runs", "--run_name", "d"]
        for k, v in paths.items():
            argv += [f"--{k}", str(v)]
        t0 = time.perf_counter()
        assert train_dejavid.main(argv) == 0
        cli_s = time.perf_counter() - t0
        rows = [json.loads(line) for line in
                (Path(tmp) / "runs" / "d" / "metrics.jsonl").read_text().splitlines()]
    cli = rows[-1]["val_top1"]
    index = load_index(*[str(v) for v in paths.values()], progress=False)

    def split(name):
        rows_ = index.rows(name)
        from dejavid.data.dataset import TSEDataset
        ds = TSEDataset(index, name, True, False)
        X = [ds[n][0].numpy() for n in range(len(ds))]
        y = [index.label_values[index.labels[k]] for k in rows_]
        return X, y
    (Xtr, ytr), (Xva, yva) = split("train"), split("val")
    t0 = time.perf_counter()
    clf = DejaVidClassifier().fit(Xtr, ytr)
    est_s = time.perf_counter() - t0
    est = clf.score(Xva, yva)
    print(f"train_dejavid.py --config configs/default.yaml: final val top-1 {100 * cli:.2f} "
          f"({len(rows)} epochs, {cli_s:.1f} s)")
    print(f"DejaVidClassifier():                           val top-1 {100 * est:.2f} "
          f"({len(clf.history_)} epochs, {est_s:.1f} s)")
    print(f"difference: {100 * (est - cli):+.2f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
