"""Which videos form each batch of an epoch, and the loader that reads them."""
from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader, Dataset

from ..data.dataset import collate_packed
from ..data.store import device_free_bytes
from .distributed import DistInfo, shard


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, shuffle: bool) -> list[list[int]]:
    """The epoch's batches as lists of dataset positions; a pure function of (seed, epoch),
    so a resumed run replays exactly the batches an uninterrupted one would."""
    if shuffle:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=g).tolist()
    else:
        order = list(range(n))
    return [order[s:s + batch_size] for s in range(0, n, batch_size)]


class _Batches(Dataset):
    """Item ``positions`` -> the dataset's packed batch of those positions: its own
    ``batch`` method where it has one (one gather of rows, :class:`dejavid.data.dataset.TSEDataset`),
    else :func:`dejavid.data.dataset.collate_packed` of its items."""

    def __init__(self, ds: Dataset):
        self.ds = ds

    def __getitem__(self, positions: list[int]):
        make = getattr(self.ds, "batch", None)
        return make(positions) if make is not None else collate_packed([self.ds[n] for n in positions])


# Memory a DataLoader worker process is given (a forked interpreter with torch, and the
# batches it holds): with less free memory per worker, fewer are started.
WORKER_BYTES = 512 << 20


def worker_limit() -> int:
    """The most DataLoader workers worth starting: one per CPU this process may run on,
    and no more than the free memory holds at :data:`WORKER_BYTES` each (at least 1)."""
    cpus = len(os.sched_getaffinity(0))
    return max(1, min(cpus, device_free_bytes(torch.device("cpu")) // WORKER_BYTES))


def _as_is(batch):
    return batch


def make_loader(ds: Dataset, batches: list[list[int]], num_workers: int) -> DataLoader:
    """Packed batches (:class:`dejavid.data.dataset.Batch`) of the given dataset positions, in order."""
    return DataLoader(_Batches(ds), sampler=batches, batch_size=None, collate_fn=_as_is,
                      num_workers=num_workers, persistent_workers=False)


def rank_batches(batches: list[list[int]], info: DistInfo) -> list[list[int]]:
    """This rank's share of every global batch (empty shares kept, one per global step)."""
    return [shard(b, info) for b in batches]


def local_batches(ds: Dataset, shards: list[list[int]], num_workers: int):
    """Yield this rank's Batch per global step, or None where its share is empty."""
    it = iter(make_loader(ds, [b for b in shards if b], num_workers))
    for b in shards:
        yield next(it) if b else None
