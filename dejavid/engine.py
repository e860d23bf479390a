"""Training and evaluation passes, checkpoints and the metrics log."""
from __future__ import annotations

import csv
import json
import os
import random
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .data import Batch, DataIndex, TSEDataset, collate_packed
from .distributed import DistInfo, all_sum, any_flag, gather_objects, shard
from .io import append_line, atomic_path, atomic_torch_save, atomic_write_text
from .model import DejaVid, loss_fn


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, shuffle: bool) -> list[list[int]]:
    """The epoch's batches as lists of dataset positions; a pure function of (seed, epoch),
    so a resumed run replays exactly the batches an uninterrupted one would."""
    if shuffle:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=g).tolist()
    else:
        order = list(range(n))
    return [order[s:s + batch_size] for s in range(0, n, batch_size)]


def make_loader(ds: TSEDataset, batches: list[list[int]], num_workers: int) -> DataLoader:
    return DataLoader(ds, batch_sampler=batches, collate_fn=collate_packed,
                      num_workers=num_workers, persistent_workers=False)


STOP_AFTER_ENV = "DEJAVID_STOP_AFTER_STEPS"


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop finishes its step, checkpoints and exits.
    A second signal interrupts at once.

    ``DEJAVID_STOP_AFTER_STEPS=N`` requests the same stop after this process's N-th
    training step, as a signal landing then would.  It exists so that tests (and users
    checking their resume set-up) can stop a run at a step they choose: a real signal
    lands wherever the run happens to be, and under DDP the number of steps done decides
    how far the weights drift from a single-process run.  Every rank reads the same value,
    so all ranks stop after the same step."""

    def __init__(self, env=None):
        self.requested: Optional[str] = None
        self._old = {}
        value = (os.environ if env is None else env).get(STOP_AFTER_ENV, "")
        try:
            self._steps_left = int(value) if value else None
        except ValueError:
            raise ValueError(f"{STOP_AFTER_ENV} must be a whole number of steps, "
                             f"not {value!r}") from None
        if self._steps_left is not None and self._steps_left < 1:
            raise ValueError(f"{STOP_AFTER_ENV} must be at least 1, not {value!r}")

    def step_done(self) -> None:
        """Count one finished training step (for ``DEJAVID_STOP_AFTER_STEPS``)."""
        if self._steps_left is None or self.requested:
            return
        self._steps_left -= 1
        if self._steps_left == 0:
            self.requested = STOP_AFTER_ENV

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        tqdm.write(f"{self.requested} received: finishing this step, then writing a checkpoint "
                   f"(send it again to stop at once)")

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


@dataclass
class Running:
    """Sums over the part of an epoch done so far (saved in mid-epoch checkpoints)."""
    loss_sum: float = 0.0
    correct: int = 0
    count: int = 0

    def as_dict(self):
        return {"loss_sum": self.loss_sum, "correct": self.correct, "count": self.count}


def _local_batches(ds: TSEDataset, shards: list[list[int]], num_workers: int):
    """Yield this rank's Batch per global step, or None where its share is empty."""
    it = iter(make_loader(ds, [b for b in shards if b], num_workers))
    for b in shards:
        yield next(it) if b else None


def train_one_epoch(model, ds: TSEDataset, optimizer, cfg: dict, device, epoch: int,
                    start_step: int = 0, running: Optional[Running] = None,
                    stop: Optional[StopRequest] = None,
                    on_stop: Optional[Callable[[int, Running], None]] = None,
                    progress: bool = True, info: DistInfo = DistInfo()) -> Optional[Running]:
    """One pass over the training split from ``start_step``.

    ``cfg['batch_size']`` is the global batch; under torchrun each rank takes its
    share of every global batch and ``model`` is the DDP-wrapped module.  The
    loss is scaled so that DDP's gradient average equals the gradient of the
    mean loss over the global batch, as in a single process.  ``running`` holds
    global sums.  Returns them, or None when a stop was requested (after
    ``on_stop(steps_done, running)`` has written a checkpoint).
    """
    model.train()
    running = running or Running()
    batches = epoch_batches(len(ds), cfg["batch_size"], cfg["seed"], epoch, shuffle=True)
    shards = [shard(b, info) for b in batches[start_step:]]
    bar = tqdm(_local_batches(ds, shards, cfg["num_workers"]), total=len(batches),
               initial=start_step, desc=f"train {epoch + 1}", unit="batch", leave=False,
               disable=not progress)
    for step, batch in enumerate(bar, start=start_step):
        n_global = len(batches[step])
        if batch is None:  # more ranks than videos in this (last) batch
            batch = Batch(torch.empty(0, ds.index.feature_size), torch.zeros(1, dtype=torch.int64),
                          torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64))
        batch = batch.to(device)
        dist = model(batch.x, batch.offsets)                      # [B_local, C]
        loss_sum = loss_fn(dist, batch.labels, cfg["std_eps"], reduction="sum",
                           head=getattr(model, "module", model).head)
        optimizer.zero_grad(set_to_none=True)
        (loss_sum * (info.world_size / n_global)).backward()
        optimizer.step()
        correct = int((dist.argmin(1) == batch.labels).sum()) if batch.labels.numel() else 0
        step_sums = all_sum([loss_sum.item(), correct, batch.labels.numel()], info, device)
        running.loss_sum += step_sums[0]
        running.correct += int(step_sums[1])
        running.count += int(step_sums[2])
        bar.set_postfix(loss=f"{running.loss_sum / running.count:.4f}")
        if stop is not None:
            stop.step_done()
        if stop is not None and any_flag(bool(stop.requested), info, device):
            if on_stop is not None:
                on_stop(step + 1, running)
            return None
    return running


def rank_classes(dist: torch.Tensor, labels: torch.Tensor, k: int = 5):
    """Classes by ascending distance, ties to the lower class: (order [B, min(k, C)],
    top-1 hits, top-k hits) for distances ``dist`` [B, C] and true ``labels`` [B]."""
    order = dist.argsort(dim=1, stable=True)[:, :min(k, dist.shape[1])]
    return (order, int((order[:, 0] == labels).sum()),
            int((order == labels[:, None]).any(1).sum()))


@torch.no_grad()
def evaluate(model: DejaVid, ds: TSEDataset, cfg: dict, device, progress: bool = True,
             keep_predictions: bool = False, info: DistInfo = DistInfo()) -> dict:
    """Loss, top-1 and top-5 over every video of ``ds`` exactly once.

    Under torchrun each rank evaluates a disjoint contiguous share (no padding)
    and the sums are added.  Videos are aligned with the current parameters
    (free path), whatever the training-time path mode.
    """
    model.eval()
    fixed, model.fixed_path = model.fixed_path, False
    bs = cfg["eval_batch_size"] or cfg["batch_size"]
    mine = shard(list(range(len(ds))), info)
    batches = [mine[s:s + bs] for s in range(0, len(mine), bs)]
    loss_sum, top1, top5, count = 0.0, 0, 0, 0
    preds = []
    for batch in tqdm(make_loader(ds, batches, cfg["num_workers"]), total=len(batches),
                      desc="eval", unit="batch", leave=False, disable=not progress):
        batch = batch.to(device)
        dist = model(batch.x, batch.offsets)
        loss_sum += float(loss_fn(dist, batch.labels, cfg["std_eps"], reduction="sum",
                                  head=model.head))
        order, hits1, hits5 = rank_classes(dist, batch.labels)   # order [B, 5] nearest classes
        top1 += hits1
        top5 += hits5
        count += batch.labels.numel()
        if keep_predictions:
            preds.append((batch.rows, batch.labels.cpu(), order.cpu(),
                          dist.gather(1, order).cpu()))
    model.fixed_path = fixed
    loss_sum, top1, top5, count = all_sum([loss_sum, top1, top5, count], info, device)
    out = {"loss": loss_sum / count, "top1": top1 / count, "top5": top5 / count,
           "count": int(count)}
    if keep_predictions:
        out["predictions"] = [p for part in gather_objects(preds, info) for p in part]
    return out


@torch.no_grad()
def calibrate_head(model: DejaVid, ds: TSEDataset, cfg: dict, device,
                   max_videos: int = 1024) -> None:
    """Set the logit head's scale from the initial distances of up to ``max_videos``
    training videos (a seeded subset, the same on every rank); a no-op for the zscore head."""
    if not getattr(model.head, "calibrated_from_data", False):
        return
    g = torch.Generator().manual_seed(cfg["seed"])
    rows = torch.randperm(len(ds), generator=g)[:max_videos].tolist()
    bs = cfg["eval_batch_size"] or cfg["batch_size"]
    fixed, model.fixed_path = model.fixed_path, False
    dists = []
    for batch in make_loader(ds, [rows[s:s + bs] for s in range(0, len(rows), bs)],
                             cfg["num_workers"]):
        batch = batch.to(device)
        dists.append(model(batch.x, batch.offsets))
    model.fixed_path = fixed
    model.head.calibrate(torch.cat(dists))


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


# --- checkpoints ---------------------------------------------------------------------------

def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(path: str | Path, *, model: DejaVid, optimizer, scheduler, cfg: dict,
                    label_values: list, epoch: int, step: int, running: Optional[Running],
                    best_top1: float, history: list[dict],
                    feature_stats: Optional[dict] = None) -> None:
    """``epoch`` is the epoch to continue with and ``step`` the batches of it already done."""
    state = {
        "model": {"mu": model.mu.detach().cpu(), "theta": model.theta.detach().cpu()},
        "head": {k: v.detach().cpu() for k, v in model.head.state_dict().items()},
        "standardize": feature_stats,   # training-split statistics the model expects, or None
        "snapshot": ({"mu": model.mu_fixed.cpu(), "theta": model.theta_fixed.cpu()}
                     if step > 0 and model.fixed_path else None),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "config": dict(cfg),
        "label_values": list(label_values),
        "epoch": epoch,
        "step": step,
        "running": running.as_dict() if running is not None else None,
        "best_top1": best_top1,
        "history": list(history),   # metrics rows of finished epochs (source of metrics.jsonl)
        "rng": rng_state(),
    }
    atomic_torch_save(state, path)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        # Our own checkpoints hold numpy/python RNG states, so they are not weights_only.
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"checkpoint {path} is unreadable ({exc})") from exc


def restore_model(model: DejaVid, ckpt: dict) -> None:
    with torch.no_grad():
        model.mu.copy_(ckpt["model"]["mu"])
        model.theta.copy_(ckpt["model"]["theta"])
        if ckpt.get("head"):
            model.head.load_state_dict(ckpt["head"])
    if ckpt.get("snapshot") is not None:
        model.mu_fixed = ckpt["snapshot"]["mu"].to(model.mu.device)
        model.theta_fixed = ckpt["snapshot"]["theta"].to(model.mu.device)


# --- metrics log ---------------------------------------------------------------------------

class MetricsLog:
    """metrics.jsonl in the run folder: one JSON object per finished epoch."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "metrics.jsonl"

    def read(self) -> list[dict]:
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
    return (f"epoch {row['epoch']}/{num_epochs} loss {row['train_loss']:.4f} "
            f"train@1 {row['train_top1']:.4f} val_loss {row['val_loss']:.4f} "
            f"val@1 {row['val_top1']:.4f} val@5 {row['val_top5']:.4f} {row['seconds']:.1f} s")
