"""Training and evaluation passes over a dataset (one epoch each)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from .batching import epoch_batches, local_batches, make_loader, rank_batches
from ..data.dataset import Batch
from .distributed import DistInfo, all_sum, any_flag, gather_objects, shard
from ..model.metrics import rank_classes
from ..model.layer import DejaVid, loss_fn
from ..config.settings import LoopSpec
from .signals import StopRequest
from .timing import NULL_TIMER


class NonFiniteError(ValueError):
    """The loss or the parameters became NaN or infinite: training cannot go on."""


def _check_finite(model, loss_sum: float, where: str) -> None:
    # Every rank sees the same global loss and, after DDP's averaged step, the same
    # parameters, so all ranks raise together (none is left waiting at a collective).
    if not math.isfinite(loss_sum):
        raise NonFiniteError(f"{where}: the loss is {loss_sum}")
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise NonFiniteError(f"{where}: parameter(s) {', '.join(bad)} became NaN or infinite")


@dataclass
class Running:
    """Sums over the part of an epoch done so far (saved in mid-epoch checkpoints)."""
    loss_sum: float = 0.0
    correct: int = 0
    count: int = 0

    def as_dict(self):
        return {"loss_sum": self.loss_sum, "correct": self.correct, "count": self.count}


def train_one_epoch(model, ds: Dataset, optimizer, loop: LoopSpec, device, epoch: int,
                    start_step: int = 0, running: Optional[Running] = None,
                    stop: Optional[StopRequest] = None,
                    on_stop: Optional[Callable[[int, Running], None]] = None,
                    progress: bool = True, info: DistInfo = DistInfo(),
                    timer=NULL_TIMER) -> Optional[Running]:
    """One pass over the training split from ``start_step``.

    ``loop.batch_size`` is the global batch; under torchrun each rank takes its
    share of every global batch and ``model`` is the DDP-wrapped module.  The
    loss is scaled so that DDP's gradient average equals the gradient of the
    mean loss over the global batch, as in a single process.  ``running`` holds
    global sums.  Returns them, or None when a stop was requested (after
    ``on_stop(steps_done, running)`` has written a checkpoint).  ``timer``
    (:mod:`dejavid.training.timing`) is charged the stages data, forward, backward and optimizer.
    Raises :class:`NonFiniteError` as soon as a step's loss or the parameters after it are
    not finite (nothing is saved from such a step).
    """
    model.train()
    running = running or Running()
    batches = epoch_batches(len(ds), loop.batch_size, loop.seed, epoch, shuffle=True)
    shards = rank_batches(batches[start_step:], info)
    bar = tqdm(timer.iterate("data", local_batches(ds, shards, loop.num_workers)),
               total=len(batches),
               initial=start_step, desc=f"train {epoch + 1}", unit="batch", leave=False,
               disable=not progress)
    for step, batch in enumerate(bar, start=start_step):
        n_global = len(batches[step])
        if batch is None:  # more ranks than videos in this (last) batch
            batch = Batch(torch.empty(0, ds.index.feature_size), torch.zeros(1, dtype=torch.int64),
                          torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64))
        with timer.stage("data"):
            batch = batch.to(device)
        with timer.stage("forward"):
            dist = model(batch.x, batch.offsets, batch.rows)      # [B_local, C]
            loss_sum = loss_fn(dist, batch.labels, loop.std_eps, reduction="sum",
                               head=getattr(model, "module", model).head)
        with timer.stage("backward"):
            optimizer.zero_grad(set_to_none=True)
            (loss_sum * (info.world_size / n_global)).backward()
        with timer.stage("optimizer"):
            optimizer.step()
        correct = int((dist.argmin(1) == batch.labels).sum()) if batch.labels.numel() else 0
        step_sums = all_sum([loss_sum.item(), correct, batch.labels.numel()], info, device)
        _check_finite(model, step_sums[0], f"epoch {epoch + 1}, step {step + 1}")
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


@torch.no_grad()
def evaluate(model: DejaVid, ds: Dataset, loop: LoopSpec, device, progress: bool = True,
             keep_predictions: bool = False, info: DistInfo = DistInfo(),
             keep_logits: bool = False) -> dict:
    """Loss, top-1 and top-5 over every video of ``ds`` exactly once (``keep_logits``:
    also "logits" [N, C] and "labels" [N], on the CPU, in one process).

    Under torchrun each rank evaluates a disjoint contiguous share (no padding)
    and the sums are added.  Videos are aligned with the current parameters
    (free path), whatever the training-time path mode.
    """
    model.eval()
    fixed, model.fixed_path = model.fixed_path, False
    bs = loop.eval_batch_size
    mine = shard(list(range(len(ds))), info)
    batches = [mine[s:s + bs] for s in range(0, len(mine), bs)]
    loss_sum, top1, top5, count = 0.0, 0, 0, 0
    preds, logits, labels = [], [], []
    for batch in tqdm(make_loader(ds, batches, loop.num_workers), total=len(batches),
                      desc="eval", unit="batch", leave=False, disable=not progress):
        batch = batch.to(device)
        dist = model(batch.x, batch.offsets)
        if keep_logits:
            logits.append(model.head(dist).cpu())
            labels.append(batch.labels.cpu())
        loss_sum += float(loss_fn(dist, batch.labels, loop.std_eps, reduction="sum",
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
    _check_finite(model, loss_sum, "evaluation (distances beyond float32's range: features "
                                   "or weights too large)")
    out = {"loss": loss_sum / count, "top1": top1 / count, "top5": top5 / count,
           "count": int(count)}
    if keep_predictions:
        out["predictions"] = [p for part in gather_objects(preds, info) for p in part]
    if keep_logits:
        out["logits"], out["labels"] = torch.cat(logits), torch.cat(labels)
    return out


@torch.no_grad()
def calibrate_head(model: DejaVid, ds: Dataset, loop: LoopSpec, device,
                   max_videos: int = 1024) -> None:
    """Set the logit head's scale (and, with several prototypes per class, the soft
    minimum's temperature) from the initial distances of up to ``max_videos`` training
    videos (a seeded subset, the same on every rank); a no-op for the zscore head with
    one prototype per class."""
    head_wants = getattr(model.head, "calibrated_from_data", False)
    if not head_wants and model.pool is None:
        return
    g = torch.Generator().manual_seed(loop.seed)
    rows = torch.randperm(len(ds), generator=g)[:max_videos].tolist()
    bs = loop.eval_batch_size
    fixed, model.fixed_path = model.fixed_path, False
    dists, index_rows = [], []
    for batch in make_loader(ds, [rows[s:s + bs] for s in range(0, len(rows), bs)],
                             loop.num_workers):
        index_rows.append(batch.rows)
        batch = batch.to(device)
        dists.append(model.prototype_distances(batch.x, batch.offsets))
    model.fixed_path = fixed
    dist = torch.cat(dists)
    if model.pool is not None:
        model.pool.calibrate(dist)
        # as training will see them: a video's own prototype left out
        dist = model.pool(dist, torch.cat(index_rows))
    if head_wants:
        model.head.calibrate(dist)
