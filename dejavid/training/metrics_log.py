"""metrics.jsonl in a run folder and the one-line epoch summary."""
from __future__ import annotations

import json
from pathlib import Path

from ..io import append_line, atomic_write_text


class MetricsLog:
    """metrics.jsonl in the run folder: one JSON object per finished epoch."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "metrics.jsonl"

    def read(self) -> list[dict]:
        """The rows up to the first line that is not whole JSON (a line cut by a crash)."""
        if not self.path.is_file():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a crash: everything after it is untrusted
        return rows

    def rewrite(self, rows: list[dict]) -> None:
        """Make the file hold exactly ``rows`` (on resume: the checkpoint's history, so that
        lines of epochs after the checkpoint, or a line lost to a crash, are set right)."""
        atomic_write_text("".join(json.dumps(r) + "\n" for r in rows), self.path)

    def append(self, row: dict) -> None:
        append_line(self.path, json.dumps(row))


def format_epoch(row: dict, num_epochs: int) -> str:
    """``epoch 3/30 loss … train@1 … val_loss … val@1 … val@5 … 1.2 s`` (the val part only
    for epochs that were evaluated)."""
    text = (f"epoch {row['epoch']}/{num_epochs} loss {row['train_loss']:.4f} "
            f"train@1 {row['train_top1']:.4f} ")
    if row.get("val_top1") is not None:
        text += (f"val_loss {row['val_loss']:.4f} val@1 {row['val_top1']:.4f} "
                 f"val@5 {row['val_top5']:.4f} ")
    return text + f"{row['seconds']:.1f} s"
