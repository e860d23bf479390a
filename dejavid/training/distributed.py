"""torchrun / DistributedDataParallel plumbing (NCCL on GPU, gloo on CPU).

A single process (no torchrun) is world size 1 and every helper here is a no-op.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from ..device import resolve_device
from ..errors import PeerError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes in the environment; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), resolve_device(device_name)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested under torchrun but CUDA is not available")
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        # Centroid computation on rank 0 can take a while; the others wait at a barrier.
        dist.init_process_group("nccl" if use_cuda else "gloo",
                                timeout=datetime.timedelta(hours=6))
    return DistInfo(rank, world, local), device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shard(batch: list[int], info: DistInfo) -> list[int]:
    """This rank's contiguous share of a global batch (shares differ by at most one)."""
    n, w = len(batch), info.world_size
    base, extra = divmod(n, w)
    start = info.rank * base + min(info.rank, extra)
    return batch[start:start + base + (1 if info.rank < extra else 0)]


def all_sum(values: list[float], info: DistInfo, device) -> list[float]:
    """Sum a few scalars over ranks (float64, so counts stay exact)."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def any_flag(flag: bool, info: DistInfo, device) -> bool:
    """True on every rank when it is True on any (a stop request seen by one rank)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_objects(obj, info: DistInfo) -> list:
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def agree(error: Optional[BaseException], info: DistInfo) -> None:
    """Collective: when any rank has an ``error``, every rank raises: its own error where
    it has one, :class:`PeerError` elsewhere.  Use it after work only some ranks do (rank
    0 preparing the run folder, computing centroids), so the others do not wait forever
    at the next collective."""
    if info.enabled:
        errors = gather_objects(None if error is None else f"{type(error).__name__}: {error}",
                                info)
        if error is None and any(e is not None for e in errors):
            raise PeerError(next(e for e in errors if e is not None))
    if error is not None:
        raise error
