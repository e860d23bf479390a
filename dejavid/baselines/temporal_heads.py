"""Two learned temporal heads, as baselines beside DejaVid (scikit-learn-style estimators).

    from dejavid.baselines.temporal_heads import AttentiveProbeClassifier, GRUClassifier
    clf = GRUClassifier(seed=0).fit(X_train, y_train)     # X: list of [T, F] arrays
    clf.predict(X_test); clf.predict_proba(X_test); clf.score(X_test, y_test)

``GRUClassifier``: a bidirectional GRU over the steps, mean-pooled over the
real (unpadded) steps, then a linear layer.  ``AttentiveProbeClassifier``: the
steps are projected, given a learned position (a table over relative time,
interpolated, so any length works), and one learned query cross-attends over
them; a linear layer reads the attended vector.  Both see the features
standardised with the training split's per-feature statistics, train with AdamW
on cross-entropy (300 updates of batch 32, cosine schedule, gradients clipped to
norm 1), and use the same settings on
every data set.  The GRU first averages series longer than 64 steps over
windows (``max_len``).  Series of any lengths are padded within a batch; padding never
changes a prediction (packed sequences for the GRU, a key mask for attention).
Everything random (initialisation, batch order, dropout) follows ``seed``.

Needs scikit-learn (the ``baselines`` extra) for the estimator API:
``get_params``/``set_params``, ``clone``, ``score``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as Fn
from sklearn.base import BaseEstimator, ClassifierMixin

from ..data.standardize import apply as standardize_features, statistics


def _as_tensors(X: Sequence) -> list[torch.Tensor]:
    """A list of [T, F] arrays/tensors -> float32 tensors, checked."""
    if len(X) == 0:
        raise ValueError("X is empty: pass a list of [T, F] arrays")
    out = []
    for n, x in enumerate(X):
        t = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        if t.dim() != 2 or t.shape[0] == 0:
            raise ValueError(f"X[{n}] must be a 2-D [T, F] array with T >= 1, got shape "
                             f"{tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"X[{n}] contains NaN or Inf values")
        out.append(t)
    if len({t.shape[1] for t in out}) != 1:
        raise ValueError("every series in X must have the same number of features F")
    return out


def pool_time(x: torch.Tensor, max_len) -> torch.Tensor:
    """x [T, F] average-pooled over windows of ceil(T / max_len) steps when T > max_len."""
    if max_len is None or x.shape[0] <= max_len:
        return x
    w = -(-x.shape[0] // max_len)
    return Fn.avg_pool1d(x.t()[None], w, w, ceil_mode=True)[0].t().contiguous()


def pad(xs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Series [T_b, F] -> (x [B, T_max, F] zero-padded, mask [B, T_max] True on real steps)."""
    lengths = torch.tensor([x.shape[0] for x in xs])
    x = nn.utils.rnn.pad_sequence(xs, batch_first=True)
    mask = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    return x, mask


class BiGRUNet(nn.Module):
    """Bidirectional GRU, mean over the real steps, linear classifier."""

    def __init__(self, num_features: int, num_classes: int, hidden: int, dropout: float):
        super().__init__()
        self.gru = nn.GRU(num_features, hidden, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden, num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, T, F], mask [B, T] -> logits [B, C]."""
        lengths = mask.sum(1)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                   enforce_sorted=False)
        h, _ = self.gru(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])
        pooled = (h * mask[..., None]).sum(1) / lengths[:, None]   # [B, 2H]
        return self.out(self.drop(pooled))


class AttentiveProbeNet(nn.Module):
    """One learned query cross-attending over projected steps plus learned positions."""

    def __init__(self, num_features: int, num_classes: int, hidden: int, dropout: float,
                 num_heads: int = 4, num_positions: int = 16):
        super().__init__()
        self.proj = nn.Linear(num_features, hidden)
        # Positions over relative time [0, 1], linearly interpolated: series of any length
        # (and of other lengths at test time) get positions from the same table.
        self.positions = nn.Parameter(0.02 * torch.randn(num_positions, hidden))
        self.norm = nn.LayerNorm(hidden)
        self.query = nn.Parameter(0.02 * torch.randn(1, 1, hidden))
        self.attn = nn.MultiheadAttention(hidden, num_heads, dropout=dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, num_classes)

    def position_embedding(self, mask: torch.Tensor) -> torch.Tensor:
        """mask [B, T] -> positions [B, T, H] at each real step's relative time t / (T_b - 1)."""
        lengths = mask.sum(1, keepdim=True)                                  # [B, 1]
        t = torch.arange(mask.shape[1], device=mask.device)[None, :].float()
        rel = (t / (lengths - 1).clamp_min(1)).clamp(0, 1)                   # [B, T]
        pos = rel * (self.positions.shape[0] - 1)
        lo = pos.floor().long().clamp(max=self.positions.shape[0] - 1)
        hi = (lo + 1).clamp(max=self.positions.shape[0] - 1)
        frac = (pos - lo)[..., None]
        P = self.positions.shape[0]
        # The interpolation as a [B, T, P] weight matrix times the table: the gradient is
        # then a matmul.  Indexing the table (positions[lo]) has index_put_(accumulate)
        # as its gradient, which on CPU with several threads adds in a varying order:
        # the same seed gave other weights from run to run.
        weights = (Fn.one_hot(lo, P).to(frac.dtype) * (1 - frac)
                   + Fn.one_hot(hi, P).to(frac.dtype) * frac)
        return weights @ self.positions

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, T, F], mask [B, T] -> logits [B, C]."""
        h = self.norm(self.proj(x) + self.position_embedding(mask))          # [B, T, H]
        q = self.query.expand(x.shape[0], -1, -1)                            # [B, 1, H]
        a, _ = self.attn(q, h, h, key_padding_mask=~mask, need_weights=False)
        return self.out(self.drop(a[:, 0]))


class _TemporalClassifier(ClassifierMixin, BaseEstimator):
    """fit/predict/predict_proba on lists of [T, F] series; subclasses pick the network."""

    def __init__(self, hidden: int = 64, steps: int = 300, batch_size: int = 32,
                 lr: float = 1e-2, weight_decay: float = 1e-2, dropout: float = 0.1,
                 max_len=None, seed: int = 0):
        self.hidden = hidden
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.max_len = max_len
        self.seed = seed

    def _net(self, num_features: int, num_classes: int) -> nn.Module:
        raise NotImplementedError

    def fit(self, X: Sequence, y: Sequence) -> "_TemporalClassifier":
        """Train on series X (list of [T, F]) with labels y (any sortable values)."""
        xs = _as_tensors(X)
        y = np.asarray(y)
        if len(y) != len(xs):
            raise ValueError(f"X has {len(xs)} series but y has {len(y)} labels")
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("y needs at least two classes")
        self.feature_stats_ = statistics(xs)
        xs = [pool_time(standardize_features(x, self.feature_stats_), self.max_len) for x in xs]
        labels = torch.as_tensor(codes, dtype=torch.int64)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net_ = self._net(xs[0].shape[1], len(self.classes_))
            opt = torch.optim.AdamW(self.net_.parameters(), lr=self.lr,
                                    weight_decay=self.weight_decay)
            # A fixed number of updates (not epochs): data sets of 20 and of 2000 series
            # get the same optimisation budget.  Epochs run whole, so the last may overshoot.
            steps_per_epoch = -(-len(xs) // self.batch_size)
            epochs = -(-self.steps // steps_per_epoch)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
            g = torch.Generator().manual_seed(self.seed)
            self.net_.train()
            self.loss_curve_ = []
            for _ in range(epochs):
                order = torch.randperm(len(xs), generator=g).tolist()
                total = 0.0
                for s in range(0, len(xs), self.batch_size):
                    idx = order[s:s + self.batch_size]
                    x, mask = pad([xs[i] for i in idx])
                    loss = Fn.cross_entropy(self.net_(x, mask), labels[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    nn.utils.clip_grad_norm_(self.net_.parameters(), 1.0)
                    opt.step()
                    sched.step()
                    total += loss.item() * len(idx)
                self.loss_curve_.append(total / len(xs))
        self.net_.eval()
        # For the reproduce table: the whole network is the head on top of the features.
        self.head_params_ = self.trained_params_ = sum(p.numel() for p in self.net_.parameters())
        return self

    def decision_function(self, X: Sequence) -> np.ndarray:
        """Log-probabilities [N, C] (larger: more likely), columns in the order of ``classes_``."""
        return np.log(np.clip(self.predict_proba(X).astype(np.float64), 1e-300, None))

    @torch.no_grad()
    def predict_proba(self, X: Sequence) -> np.ndarray:
        """Class probabilities [N, C], columns in the order of ``classes_``."""
        if not hasattr(self, "net_"):
            raise ValueError("call fit before predict_proba")
        xs = [pool_time(standardize_features(x, self.feature_stats_), self.max_len)
              for x in _as_tensors(X)]
        out = []
        for s in range(0, len(xs), 256):
            x, mask = pad(xs[s:s + 256])
            out.append(torch.softmax(self.net_(x, mask), 1))
        return torch.cat(out).numpy()

    def predict(self, X: Sequence) -> np.ndarray:
        """Most probable class of each series (original label values)."""
        return self.classes_[self.predict_proba(X).argmax(1)]


class GRUClassifier(_TemporalClassifier):
    """Bidirectional GRU (``hidden`` units per direction) + masked mean pooling + linear.

    A GRU steps through time one step after the other, so series longer than
    ``max_len`` (64) are first averaged over windows of ceil(T / 64) steps:
    training on ACSF1's 1460 steps would otherwise take minutes per seed on CPU.
    """

    def __init__(self, hidden: int = 64, steps: int = 300, batch_size: int = 32,
                 lr: float = 1e-2, weight_decay: float = 1e-2, dropout: float = 0.1,
                 max_len=64, seed: int = 0):
        super().__init__(hidden, steps, batch_size, lr, weight_decay, dropout, max_len, seed)

    def _net(self, num_features: int, num_classes: int) -> nn.Module:
        return BiGRUNet(num_features, num_classes, self.hidden, self.dropout)


class AttentiveProbeClassifier(_TemporalClassifier):
    """Linear projection to ``hidden`` + learned positions, one learned query attending
    over the steps (4 heads), linear classifier."""

    def _net(self, num_features: int, num_classes: int) -> nn.Module:
        return AttentiveProbeNet(num_features, num_classes, self.hidden, self.dropout)
