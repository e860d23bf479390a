"""The encoder's own prediction: its class logits averaged over the clips of a video.

A video encoder such as VideoMAE V2-g classifies a video by averaging the class logits of
its clips and taking the argmax.  When each step of the features holds the clip's embedding
followed by its C class logits (the paper's F = 1408 + C; config key ``logit_columns`` = C),
that prediction is recovered from the features alone, and it is the row DejaVid has to beat:

    clf = EncoderLogits(logit_columns=51).fit(X_train, y_train)   # X: list of [T, F] series
    clf.score(X_val, y_val)                                       # top-1 accuracy
    clf.top_k_score(X_val, y_val, k=5)

``fit`` trains nothing; it only records the class labels.  Logit column j belongs to the
j-th class in sorted label order, which is how dejavid numbers classes (labels remapped to
0..C-1 in sorted order) and how the encoder numbers its own when the labels are its class ids.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch


def check_logit_columns(logit_columns: int, num_classes: int, feature_size: int) -> None:
    """ValueError unless ``logit_columns`` can be the last columns of [T, feature_size] steps
    holding one logit per class of ``num_classes``."""
    if isinstance(logit_columns, bool) or not isinstance(logit_columns, (int, np.integer)):
        raise ValueError(f"logit_columns must be an integer, got {logit_columns!r}")
    if logit_columns < 1:
        raise ValueError(f"logit_columns is {logit_columns}: set it to the number of classes C "
                         f"when the last C features of each step are the encoder's class logits "
                         f"(the encoder baseline needs them)")
    if logit_columns != num_classes:
        raise ValueError(f"logit_columns = {logit_columns} but the data has {num_classes} "
                         f"classes: the encoder's logits are one column per class, so set "
                         f"logit_columns to {num_classes}")
    if logit_columns > feature_size:
        raise ValueError(f"logit_columns = {logit_columns} exceeds the {feature_size} features "
                         f"per step; the logits are the last columns of each step")


def _series(X) -> list[np.ndarray]:
    """A list of float64 [T, F] arrays from a list of [T, F] arrays/tensors or an [N, T, F] array."""
    if isinstance(X, (np.ndarray, torch.Tensor)) and X.ndim == 3:
        items = list(X)
    elif isinstance(X, (list, tuple)):
        items = list(X)
    else:
        raise ValueError("X must be a list of [T, F] arrays or tensors, or an [N, T, F] array; "
                         f"got {type(X).__name__}" + (f" of shape {tuple(X.shape)}"
                                                      if hasattr(X, "shape") else ""))
    if not items:
        raise ValueError("X holds no series")
    out = []
    for n, x in enumerate(items):
        a = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float64)
        if a.ndim != 2 or a.shape[0] == 0:
            raise ValueError(f"X[{n}] must be a non-empty [T, F] series, got shape {a.shape}")
        if a.shape[1] != (out[0].shape[1] if out else a.shape[1]):
            raise ValueError(f"X[{n}] has {a.shape[1]} features but X[0] has {out[0].shape[1]}")
        out.append(a)
    return out


class EncoderLogits:
    """Clip-averaged encoder logits: argmax over classes of the time-mean of the last
    ``logit_columns`` features.  Ties go to the lower class, as in DejaVid's own ranking."""

    def __init__(self, logit_columns: int = 0):
        self.logit_columns = logit_columns

    def get_params(self, deep: bool = True) -> dict:
        return {"logit_columns": self.logit_columns}

    def set_params(self, **params) -> "EncoderLogits":
        for key, value in params.items():
            if key != "logit_columns":
                raise ValueError(f"unknown parameter {key!r} for EncoderLogits; valid: logit_columns")
            setattr(self, key, value)
        return self

    def fit(self, X, y) -> "EncoderLogits":
        """Record the classes (sorted) and the feature size; nothing is trained."""
        series = _series(X)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(series):
            raise ValueError(f"y must hold one label per series: {len(series)} series, "
                             f"y of shape {y.shape}")
        classes = np.unique(y)
        check_logit_columns(self.logit_columns, len(classes), series[0].shape[1])
        self.classes_ = classes
        self.n_features_in_ = series[0].shape[1]
        return self

    def _check_fitted(self, series: list[np.ndarray]) -> None:
        if not hasattr(self, "classes_"):
            raise ValueError("this EncoderLogits is not fitted yet: call fit(X, y) first")
        if series[0].shape[1] != self.n_features_in_:
            raise ValueError(f"X has {series[0].shape[1]} features per step but fit saw "
                             f"{self.n_features_in_}")

    def decision_function(self, X) -> np.ndarray:
        """Time-averaged logits [N, C] (float64), one column per class of ``classes_``."""
        series = _series(X)
        self._check_fitted(series)
        C = self.logit_columns
        return np.stack([x[:, -C:].mean(0) for x in series])

    def predict(self, X) -> np.ndarray:
        scores = self.decision_function(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def score(self, X, y) -> float:
        """Top-1 accuracy."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def top_k_score(self, X, y, k: int = 5) -> float:
        """Share of series whose label is among the k classes with the largest mean logit."""
        scores = self.decision_function(X)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :min(k, scores.shape[1])]
        hits = self.classes_[order] == np.asarray(y)[:, None]
        return float(np.mean(hits.any(1)))


def encoder_logits_for(cfg: dict, num_classes: int, feature_size: int) -> Optional[EncoderLogits]:
    """The baseline for a config and its data, or None when ``logit_columns`` is 0
    (the features hold no encoder logits); a ``logit_columns`` that cannot fit the data
    is a ValueError saying what to set."""
    if not cfg.get("logit_columns", 0):
        return None
    check_logit_columns(cfg["logit_columns"], num_classes, feature_size)
    return EncoderLogits(cfg["logit_columns"])
