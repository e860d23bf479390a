"""What ``predict.py`` reads and writes.

Inputs are video files, folders (every file with a video suffix under them, sorted) and
CSV manifests (``*.csv`` with a ``path`` column, optionally ``label``; relative paths
from the manifest's folder, as extract_tse.py's csv source reads them).  A file that
is given by name is always tried, whatever its suffix: a file FFmpeg cannot read is
then reported with its reason, not skipped silently.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

from ..extract.sources import VIDEO_SUFFIXES
from ..io import atomic_path


def list_inputs(args: list[str]) -> tuple[list[str], list[Optional[str]]]:
    """``(video paths, known class per path or None)`` from files, folders and manifests.

    FileNotFoundError naming the argument when it does not exist; ValueError for a
    manifest without a ``path`` column or a folder without videos."""
    paths, labels = [], []
    for arg in args:
        p = Path(arg)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise ValueError(f"folder {p} holds no video files ({', '.join(VIDEO_SUFFIXES)})")
            paths += [str(f) for f in found]
            labels += [None] * len(found)
        elif p.is_file() and p.suffix.lower() == ".csv":
            with open(p, newline="") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames or "path" not in reader.fieldnames:
                    raise ValueError(f"manifest {p}: the first row must be a header with a "
                                     f"'path' column (and optionally 'label'), got {reader.fieldnames}")
                for row in reader:
                    paths.append(str(p.parent / row["path"].strip()))
                    labels.append((row.get("label") or "").strip() or None)
        elif p.is_file():
            paths.append(str(p))
            labels.append(None)
        else:
            raise FileNotFoundError(f"{arg}: no such file or folder; give video files, folders "
                                    f"of videos or a CSV manifest with a 'path' column")
    return paths, labels


def write_predictions_csv(preds, path: str | Path) -> None:
    """CSV ``video,label,pred_top5,dist_top5,error`` (classes and distances space-separated,
    nearest first; ``label`` the manifest's class or empty), written atomically."""
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["video", "label", "pred_top5", "dist_top5", "error"])
            for p in preds:
                w.writerow([p.video, p.label or "", " ".join(p.classes),
                            " ".join(f"{d:.6g}" for d in p.distances), p.error or ""])


__all__ = ["list_inputs", "write_predictions_csv"]
