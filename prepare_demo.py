"""Write aeon's bundled JapaneseVowels (UCR/UEA) in DejaVid's on-disk format.

    python prepare_demo.py [--out data/japanese_vowels]

Official train split -> 'train', official test split -> 'val'.  Each series
[12 features, T steps] becomes a [T, 12] float32 tensor.  To show both file
layouts of docs/DESIGN.md section 1, training videos get one file each and all
validation videos share one dict file.  Nothing is downloaded: the data ship
inside the aeon wheel.
"""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np
import torch

from dejavid.io import atomic_path, atomic_torch_save


def load_split(name: str, split: str):
    try:
        from aeon.datasets import load_classification
    except ImportError as exc:
        raise SystemExit("the demo needs aeon: pip install aeon") from exc
    X, y = load_classification(name, split=split)
    return [np.asarray(s, dtype=np.float32).T.copy() for s in X], [int(v) for v in y]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="data/japanese_vowels")
    ap.add_argument("--dataset", default="JapaneseVowels", help="any aeon classification dataset")
    args = ap.parse_args(argv)
    out = Path(args.out)
    (out / "feats").mkdir(parents=True, exist_ok=True)
    id2splits, id2labels, id2fname, val_blob = {}, {}, {}, {}
    for split, ours in (("train", "train"), ("test", "val")):
        series, labels = load_split(args.dataset, split)
        for n, (x, lab) in enumerate(zip(series, labels)):
            vid = f"{ours}_{n:04d}"
            id2splits[vid], id2labels[vid] = ours, lab
            if ours == "train":
                id2fname[vid] = f"feats/{vid}.pt"
                atomic_torch_save(torch.from_numpy(x), out / id2fname[vid])
            else:
                id2fname[vid] = "feats/val_all.pt"
                val_blob[vid] = torch.from_numpy(x)
    atomic_torch_save(val_blob, out / "feats" / "val_all.pt")
    for name, m in (("id2splits", id2splits), ("id2labels", id2labels), ("id2fname", id2fname)):
        with atomic_path(out / f"{name}.pkl") as tmp:
            with open(tmp, "wb") as fh:
                pickle.dump(m, fh)
    n_train = sum(s == "train" for s in id2splits.values())
    print(f"{args.dataset}: {n_train} train / {len(id2splits) - n_train} val videos, "
          f"{len(set(id2labels.values()))} classes -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
