"""Per-video predictions as CSV (train_dejavid.py --eval-only --predictions)."""
from __future__ import annotations

import csv
from pathlib import Path

from ..data.dataset import DataIndex
from ..io import atomic_path


def write_predictions(path: str | Path, index: DataIndex, preds) -> None:
    """CSV: video_id, true_label, top-5 predicted labels and their distances (original labels)."""
    lv = index.label_values
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["video_id", "true_label", "pred_top5", "dist_top5", "correct"])
            for rows, labels, order, dist in preds:
                for r, y, o, d in zip(rows.tolist(), labels.tolist(), order.tolist(), dist.tolist()):
                    w.writerow([index.ids[r], lv[y], " ".join(str(lv[c]) for c in o),
                                " ".join(f"{v:.6g}" for v in d), int(o[0] == y)])
