"""Ranking classes by distance: top-1 / top-k hits, shared by training, evaluation and the
baselines."""
from __future__ import annotations

import torch


def rank_classes(dist: torch.Tensor, labels: torch.Tensor, k: int = 5):
    """Classes by ascending distance, ties to the lower class: (order [B, min(k, C)],
    top-1 hits, top-k hits) for distances ``dist`` [B, C] and true ``labels`` [B]."""
    order = dist.argsort(dim=1, stable=True)[:, :min(k, dist.shape[1])]
    return (order, int((order[:, 0] == labels).sum()),
            int((order == labels[:, None]).any(1).sum()))


def topk_counts(dist: torch.Tensor, labels: torch.Tensor, k: int = 5) -> tuple[int, int]:
    """(top-1 hits, top-k hits) ranking classes by ascending ``dist`` [B, C]; ties -> lower
    class, as DejaVid's own evaluation ranks them."""
    return rank_classes(dist, labels, k)[1:]
