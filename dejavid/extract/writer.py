"""The output folder: exactly the four inputs ``train_dejavid.py`` reads, and what says
how they were made.

    OUT/feats/<id>.pt    one tensor [T, F] per video (F = D, or D + C with the logits),
                         written to a temporary name and renamed (never half a file)
    OUT/id2splits.pkl id2labels.pkl id2fname.pkl   the maps over the videos written
    OUT/classes.json     {label id: class name}
    OUT/config.yaml      the four paths, num_classes, feature_size, logit_columns
    OUT/extraction.json  encoder, sampling and dtype: what rebuilds the encoder, and
                         what a later run into this folder must match
    OUT/failures.csv     id,path,reason of every listed video not written
"""
from __future__ import annotations

import csv
import io
import json
import pickle
from pathlib import Path

import torch
import yaml

from ..config.files import load_config
from ..io import atomic_path, atomic_write_text

FORMAT = 1
FEATS = "feats"
DTYPES = {"float16": torch.float16, "float32": torch.float32}


def feature_name(vid: str) -> str:
    """The tensor file of video ``vid``, relative to the output folder."""
    return f"{FEATS}/{vid}.pt"


def bad_id(vid: str) -> str | None:
    """Why ``vid`` cannot name a file inside the output folder, or None."""
    parts = vid.split("/")
    if not vid or vid.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in vid:
        return f"id {vid!r} cannot be a file name inside the output folder"
    return None


def write_features(out: Path, vid: str, emb: torch.Tensor, logits, dtype: str) -> None:
    """``[T, D]`` embeddings (+ ``[T, C]`` logits appended) as one tensor file, atomically.

    Saved through a buffer: ``torch.save`` to a path names the archive inside the file
    after that (temporary, random) name, so the same tensor would not give the same
    bytes twice; through a buffer it does (resumed and sharded runs are compared bitwise)."""
    x = emb if logits is None else torch.cat([emb, logits], dim=1)
    buf = io.BytesIO()
    torch.save(x.to(DTYPES[dtype]).contiguous().clone(), buf)
    with atomic_path(out / feature_name(vid)) as tmp:
        Path(tmp).write_bytes(buf.getvalue())


def check_settings(out: Path, settings: dict, overwrite: bool) -> None:
    """ValueError before any work when ``out`` holds another extraction's files (another
    encoder, sampling, dtype or logits); with ``overwrite`` they are replaced instead."""
    path = out / "extraction.json"
    if not path.is_file() or overwrite:
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is unreadable ({exc}); remove it or use --overwrite") from exc
    differ = sorted(k for k in settings if old.get(k) != settings[k])
    if differ:
        raise ValueError(f"output folder {out} holds an extraction with other settings "
                         f"({', '.join(differ)} differ: {', '.join(f'{k}={old.get(k)!r}' for k in differ)}); "
                         f"pick another --out, repeat the same settings, or add --overwrite")


def write_json(obj, path: Path) -> None:
    atomic_write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n", path)


def write_pickle(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            pickle.dump(obj, fh)


def write_failures(failures: list[tuple[str, str, str]], path: Path) -> None:
    """``failures.csv``: header ``id,path,reason``, one row per video not written (an empty
    table when all were)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "path", "reason"])
    w.writerows(sorted(failures))
    atomic_write_text(buf.getvalue(), path)


def write_dataset(out: Path, written: dict[str, tuple[str, int]], classes: list[str],
                  feature_size: int, n_logits: int, random_init: bool, name: str) -> Path:
    """The pickles over ``written`` (``{vid: (split, label id)}``), ``classes.json`` and a
    ``config.yaml`` that ``load_config`` accepts; returns the config's path.

    ``num_classes`` counts the labels present (train_dejavid.py numbers those 0..C-1 in
    sorted order); ``logit_columns`` is set when the encoder's classifier has one logit
    per class of this data set (e.g. a Kinetics-400 model on Kinetics-400)."""
    vids = sorted(written)
    write_pickle({v: written[v][0] for v in vids}, out / "id2splits.pkl")
    write_pickle({v: written[v][1] for v in vids}, out / "id2labels.pkl")
    write_pickle({v: feature_name(v) for v in vids}, out / "id2fname.pkl")
    write_json({str(i): c for i, c in enumerate(classes)}, out / "classes.json")
    present = len({written[v][1] for v in vids})
    splits = {written[v][0] for v in vids}
    cfg = {"name": name, "id2feats": str(out), "id2splits": str(out / "id2splits.pkl"),
           "id2labels": str(out / "id2labels.pkl"), "id2fname": str(out / "id2fname.pkl"),
           "num_classes": present, "feature_size": feature_size,
           "logit_columns": n_logits if n_logits and n_logits == present == len(classes) else 0,
           "eval_split": "val" if "val" in splits or "test" not in splits else "test",
           "cache_dir": str(out / "cache")}
    head = "# Written by extract_tse.py (settings in extraction.json).\n"
    if random_init:
        head += ("# WARNING: extracted with a RANDOM-INIT encoder (--random-init): these features\n"
                 "# carry no learned meaning; for tests and demos only.\n")
    path = out / "config.yaml"
    atomic_write_text(head + yaml.safe_dump(cfg, sort_keys=False), path)
    load_config(path)          # the file train_dejavid.py will read: checked here
    return path
