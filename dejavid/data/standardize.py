"""Optional per-feature standardisation (config key ``standardize``).

The alignment cost is a weighted L1 sum over features that starts from w = 1,
so features whose scales differ by orders of magnitude (an embedding beside C
logits per step, raw sensor channels) let a few of them decide every path; and
mu's learning rate is in the features' units.  With ``standardize: true`` every
feature is shifted and scaled by its mean and standard deviation over all time
steps of the *training* split, before the centroids are computed, in training,
in evaluation and in prediction.  The statistics are computed while
:func:`dejavid.data.dataset.load_index` checks the data (no extra pass over the files),
kept on the index (``index.feature_stats``, which the datasets apply) and saved
in every checkpoint, so that evaluating a checkpoint uses the statistics it was
trained with.

    stats = RunningStats(); stats.add(x)  # x [T, F], once per training video
    index.feature_stats = stats.result()  # {"mean": [F], "std": [F]} float32
    x_std = apply(x, index.feature_stats)
"""
from __future__ import annotations

from typing import Optional

import torch

# A feature whose spread is below this (relative to its magnitude) is constant
# for all practical purposes: it is centred but not scaled, rather than blown up.
_MIN_RELATIVE_STD = 1e-6


class RunningStats:
    """Per-feature mean and standard deviation over all time steps of the videos added.

    Each video's own mean and sum of squared deviations are merged into the
    running ones (Chan et al.'s pairwise update) in float64, so features with a
    large mean and a small spread keep their precision.
    """

    def __init__(self):
        self.count = 0
        self.mean: Optional[torch.Tensor] = None   # [F] float64
        self.m2: Optional[torch.Tensor] = None     # [F] float64, sum of squared deviations

    def add(self, x: torch.Tensor) -> None:
        """Add one video x [T, F]."""
        x = x.detach().to(torch.float64)
        n = x.shape[0]
        mean = x.mean(0)
        m2 = (x - mean).pow(2).sum(0)
        if self.count == 0:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta.pow(2) * (self.count * n / total)
        self.count = total

    def result(self) -> dict:
        """{"mean": [F], "std": [F]} float32 (population std; 1 for constant features)."""
        if self.count == 0:
            raise ValueError("no training videos to compute the standardisation statistics from")
        std = (self.m2 / self.count).sqrt()
        constant = std <= _MIN_RELATIVE_STD * self.mean.abs().clamp_min(1.0)
        std = torch.where(constant, torch.ones_like(std), std)
        return {"mean": self.mean.float(), "std": std.float()}


def statistics(videos) -> dict:
    """:meth:`RunningStats.result` over ``videos`` (an iterable of [T, F] tensors, merged in
    the order given)."""
    stats = RunningStats()
    for x in videos:
        stats.add(x)
    return stats.result()


def apply(x: torch.Tensor, stats: Optional[dict]) -> torch.Tensor:
    """(x - mean) / std per feature for x [T, F] (or [N, F]); x itself when ``stats`` is None."""
    if stats is None:
        return x
    return (x - stats["mean"].to(x.device, x.dtype)) / stats["std"].to(x.device, x.dtype)
