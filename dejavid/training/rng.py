"""Seeding and saving the global RNGs (python, numpy, torch).

The data loader draws its base seed from torch's global RNG, so a resumed run restores
these states to replay exactly what an uninterrupted run would have drawn.

The states are kept as tensors and plain numbers only, so that a checkpoint holding them
loads with ``torch.load(weights_only=True)``: numpy's and python's own state objects
would need the full pickle machinery, which runs whatever code a crafted file names.
"""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global RNGs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The torch, numpy and python RNG states as tensors and numbers (restored by
    :func:`set_rng_state`)."""
    return plain_rng_state(torch.get_rng_state(), np.random.get_state(), random.getstate())


def plain_rng_state(torch_state: torch.Tensor, numpy_state: tuple, python_state: tuple) -> dict:
    """The objects ``torch.get_rng_state``, ``np.random.get_state`` and ``random.getstate``
    return, as tensors and numbers only."""
    kind, keys, pos, has_gauss, cached = numpy_state
    version, internal, gauss_next = python_state
    return {
        "torch": torch_state,
        # MT19937: 624 uint32 words (int64 holds them exactly), a position, a cached normal
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        # python's Mersenne Twister: 625 ints below 2**32 and an optional cached normal
        "python": {"version": int(version),
                   "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }


def set_rng_state(state: dict) -> None:
    """Restore the states :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()),
                     p["gauss_next"]))
