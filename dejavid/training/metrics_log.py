"""metrics.jsonl in a run folder, optional TensorBoard scalars, and the one-line epoch
summary."""
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


class TensorBoardLog:
    """The same per-epoch rows as TensorBoard scalars in ``log_dir`` (needs the
    ``tensorboard`` package: ``pip install -e ".[tensorboard]"``), one tag per metric
    (``loss/train``, ``loss/val``, ``top1/train``, ``top1/val``, ``top5/val``, ``lr``,
    ``seconds``) with the epoch as the step.  Imported only when asked for."""

    TAGS = {"train_loss": "loss/train", "val_loss": "loss/val", "train_top1": "top1/train",
            "val_top1": "top1/val", "val_top5": "top5/val", "lr": "lr", "seconds": "seconds"}

    def __init__(self, log_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            from ..errors import MissingDependency
            raise MissingDependency(f"tensorboard logging ({log_dir}) needs the tensorboard "
                                    f"package: pip install tensorboard (or the "
                                    f"'tensorboard' extra), or leave tensorboard unset") from None
        self.writer = SummaryWriter(str(log_dir))

    def append(self, row: dict) -> None:
        for key, tag in self.TAGS.items():
            if row.get(key) is not None:
                self.writer.add_scalar(tag, float(row[key]), int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def format_epoch(row: dict, num_epochs: int) -> str:
    """``epoch 3/30 loss … train@1 … val_loss … val@1 … val@5 … 1.2 s`` (the val part only
    for epochs that were evaluated)."""
    text = (f"epoch {row['epoch']}/{num_epochs} loss {row['train_loss']:.4f} "
            f"train@1 {row['train_top1']:.4f} ")
    if row.get("val_top1") is not None:
        text += (f"val_loss {row['val_loss']:.4f} val@1 {row['val_top1']:.4f} "
                 f"val@5 {row['val_top5']:.4f} ")
    return text + f"{row['seconds']:.1f} s"
