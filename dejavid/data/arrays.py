"""Datasets held in memory: the same index and dataset interface as the on-disk data
(:func:`dejavid.data.dataset.load_index`, :class:`dejavid.data.dataset.TSEDataset`), built from arrays.

    index, tensors = index_from_arrays(X_train, y_train)           # X: list of [T, F]
    train_ds = ArrayDataset(index, tensors, "train")

Used by :class:`dejavid.DejaVidClassifier` and by anyone who wants :func:`dejavid.fit`
without writing files.  Nothing here touches the disk.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .dataset import Batch, DataIndex, labelled_batch
from .packing import RowSource, gather
from .standardize import apply as standardize_features


def as_sequences(X, what: str = "X") -> list[torch.Tensor]:
    """A list of float32 [T, F] tensors from X: a list/tuple of [T, F] arrays or tensors (any
    lengths), or an [N, T, F] array or tensor.  Checks one F, T >= 1 and finite values."""
    if isinstance(X, (np.ndarray, torch.Tensor)) and X.ndim == 3:
        items = list(X)
    elif isinstance(X, (list, tuple)):
        items = list(X)
    elif isinstance(X, (np.ndarray, torch.Tensor)):
        raise ValueError(f"{what} must be [N, T, F] or a list of [T, F] series, got an array of "
                         f"shape {tuple(X.shape)}")
    else:
        raise ValueError(f"{what} must be a list of [T, F] arrays or an [N, T, F] array, "
                         f"got {type(X).__name__}")
    if not items:
        raise ValueError(f"{what} holds no series")
    out = []
    F = None
    for n, x in enumerate(items):
        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
        if t.dim() != 2:
            raise ValueError(f"{what}[{n}] must be 2-D [T, F], got shape {tuple(t.shape)}")
        if t.shape[0] == 0:
            raise ValueError(f"{what}[{n}] is empty (T = 0); every series needs a step")
        if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.int16,
                                                     torch.int8, torch.uint8)):
            raise ValueError(f"{what}[{n}] must hold numbers, got {t.dtype}")
        t = t.detach().to("cpu", torch.float32).contiguous()
        if F is None:
            F = t.shape[1]
        elif t.shape[1] != F:
            raise ValueError(f"{what}[{n}] has {t.shape[1]} features but {what}[0] has {F}; "
                             f"every series needs the same F")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{what}[{n}] contains NaN or Inf values")
        out.append(t)
    return out


def index_from_arrays(X, y, label_values: Optional[Sequence] = None,
                      split: str | Sequence[str] = "train",
                      ids: Optional[Sequence] = None) -> tuple[DataIndex, list[torch.Tensor]]:
    """(index, tensors) for series ``X`` with labels ``y`` (any hashable values); ``split``
    names the split of every series, or gives one split per series.

    ``label_values`` fixes the classes and their order (default: the sorted distinct
    values of ``y``); a label outside them is a ValueError.  The index's fingerprints
    hash the contents, as for on-disk data, so centroid caches keyed on them stay valid.
    """
    tensors = as_sequences(X)
    y = list(np.asarray(y).tolist()) if not isinstance(y, list) else list(y)
    if len(y) != len(tensors):
        raise ValueError(f"X holds {len(tensors)} series but y holds {len(y)} labels")
    if label_values is None:
        label_values = sorted(set(y))
    remap = {v: k for k, v in enumerate(label_values)}
    unknown = sorted({repr(v) for v in y if v not in remap})
    if unknown:
        raise ValueError(f"labels {', '.join(unknown[:10])} are not among the classes "
                         f"{list(label_values)}")
    ids = list(range(len(tensors))) if ids is None else list(ids)
    splits = [split] * len(tensors) if isinstance(split, str) else list(split)
    if len(splits) != len(tensors):
        raise ValueError(f"{len(splits)} splits given for {len(tensors)} series")
    index = DataIndex(
        root=Path("<memory>"), ids=ids, files=[""] * len(tensors), splits=splits,
        labels=np.array([remap[v] for v in y], dtype=np.int64),
        lengths=np.array([t.shape[0] for t in tensors], dtype=np.int64),
        label_values=list(label_values), feature_size=int(tensors[0].shape[1]),
        digests=[hashlib.blake2b(t.numpy().tobytes(), digest_size=16).hexdigest()
                 for t in tensors])
    return index, tensors


class ArrayDataset(Dataset):
    """Series of one split of an in-memory index: item -> (x [T, F] float32, label, row)."""

    def __init__(self, index: DataIndex, tensors: list[torch.Tensor], split: str = "train"):
        if len(tensors) != len(index.ids):
            raise ValueError(f"{len(tensors)} tensors for an index of {len(index.ids)} series")
        self.index = index
        self.rows = index.rows(split)
        if len(self.rows) == 0:
            raise ValueError(f"split '{split}' has no series")
        self._tensors = tensors
        self._packed: Optional[RowSource] = None

    def batch(self, positions) -> Batch:
        """The series at ``positions`` as one packed batch (one gather of rows, as
        :meth:`dejavid.data.dataset.TSEDataset.batch`); the split's rows are concatenated once."""
        if self._packed is None:
            self._packed = RowSource.from_tensors([self._tensors[k] for k in self.rows])
        x, offsets = gather(self._packed, positions, self.index.feature_stats)
        return labelled_batch(self.index, self.rows, positions, x, offsets)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, n: int):
        return self.item(n)

    def item(self, n: int, standardized: bool = True):
        """(x [T, F] float32, label, row) of the ``n``-th series; with ``standardized``
        False, x as given, even when the index carries standardisation statistics."""
        k = int(self.rows[n])
        x = self._tensors[k]
        if standardized:
            x = standardize_features(x, self.index.feature_stats)
        return x, int(self.index.labels[k]), k
