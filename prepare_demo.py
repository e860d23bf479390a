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

from dejavid.config import cli
from dejavid.errors import MissingDependency
from dejavid.io import atomic_path, atomic_torch_save, check_writable_dir


def bundled_datasets() -> list[str]:
    """The classification data sets inside the installed aeon wheel (a folder with
    ``<name>_TRAIN.ts`` and ``<name>_TEST.ts``): the only ones read without a download."""
    try:
        import aeon
    except ImportError as exc:
        raise MissingDependency("the demo needs aeon: pip install aeon") from exc
    root = Path(aeon.__file__).parent / "datasets" / "data"
    return sorted(d.name for d in root.iterdir()
                  if (d / f"{d.name}_TRAIN.ts").is_file() and (d / f"{d.name}_TEST.ts").is_file())


def load_split(name: str, split: str):
    """([T, F] float32 arrays, labels) of a bundled data set's split; labels that are not
    integers are numbered in sorted order."""
    from aeon.datasets import load_classification
    X, y = load_classification(name, split=split)
    return [np.asarray(s, dtype=np.float32).T.copy() for s in X], list(y)


def integer_labels(labels: list) -> list[int]:
    """The labels as integers: as written when they are, else their rank in sorted order."""
    try:
        return [int(v) for v in labels]
    except ValueError:
        order = {v: n for n, v in enumerate(sorted(set(labels)))}
        return [order[v] for v in labels]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="data/japanese_vowels")
    ap.add_argument("--dataset", default="JapaneseVowels", help="any aeon classification dataset")
    args = ap.parse_args(argv)
    out = Path(args.out)
    known = bundled_datasets()
    if args.dataset not in known:
        raise ValueError(f"--dataset {args.dataset!r} is not bundled with the installed aeon "
                         f"(nothing is downloaded); choose one of: {', '.join(known)}")
    check_writable_dir(out / "feats", "--out")
    splits = {ours: load_split(args.dataset, split) for split, ours in (("train", "train"),
                                                                        ("test", "val"))}
    numbered = integer_labels(splits["train"][1] + splits["val"][1])
    n_train = len(splits["train"][1])
    splits["train"] = (splits["train"][0], numbered[:n_train])
    splits["val"] = (splits["val"][0], numbered[n_train:])
    (out / "feats").mkdir(parents=True, exist_ok=True)
    id2splits, id2labels, id2fname, val_blob = {}, {}, {}, {}
    for ours, (series, labels) in splits.items():
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
    cli.main_guard(main)
