"""The baselines of reproduce.py's table as estimators with DejaVidClassifier's interface.

    MeanPoolLogisticRegression()   mean over time, standardised, logistic regression
    KNeighborsDTW()                1-nearest-neighbour DTW with unit weights
    NearestDBACentroid()           nearest per-class DBA centroid with unit weights

``fit(X, y)`` on series laid out as ``layout`` says (DejaVidClassifier's parameter: [N, T, F]
or aeon's (n_cases, n_channels, n_timepoints)), ``predict``, ``predict_proba``,
``decision_function``, ``score``, ``get_params``/``set_params``; they compute with the
same functions as the table's rows (:mod:`dejavid.report.rows`).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..config import defaults as D
from .classifier import DistanceClassifier, fit_inputs
from .threads import quiet_cpu


def _unlabelled(tensors):
    """An in-memory dataset of series without labels (every label 0)."""
    from ..data.arrays import ArrayDataset, index_from_arrays
    index, tensors = index_from_arrays(tensors, [0] * len(tensors), label_values=[0])
    return ArrayDataset(index, tensors, "train")


class MeanPoolLogisticRegression(DistanceClassifier):
    """Standardised time-averaged features, multinomial logistic regression (needs
    scikit-learn).  ``predict_proba`` is the regression's; distances are -proba."""

    def __init__(self, C: float = 1.0, max_iter: int = 1000, random_state: int = 0,
                 layout: Optional[str] = None):
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state
        self.layout = layout

    def fit(self, X, y):
        """Fit on series ``X`` with labels ``y``."""
        from ..baselines.classic import fit_pooled_lr, mean_pool
        train_ds, classes = fit_inputs(X, y, self.layout)
        pooled, codes = mean_pool(train_ds)
        self.scaler_, self.lr_, self.converged_ = fit_pooled_lr(pooled, codes, self.C,
                                                                self.max_iter, self.random_state)
        self.classes_ = classes
        self.n_features_in_ = train_ds.index.feature_size
        self.n_iter_ = self.lr_.n_iter_
        return self

    def _proba(self, tensors) -> np.ndarray:
        pooled = np.stack([t.double().mean(0).numpy() for t in tensors])   # [N, F]
        return self.lr_.predict_proba(self.scaler_.transform(pooled))

    def _class_distances(self, tensors) -> np.ndarray:
        return -self._proba(tensors)

    def predict_proba(self, X) -> np.ndarray:
        """The logistic regression's class probabilities [N, C]."""
        return -self._distances(X)


class KNeighborsDTW(DistanceClassifier):
    """1-NN under DejaVid's alignment distance with unit weights; a class's distance is
    that of its nearest training series (:func:`dejavid.baselines.classic.knn_class_distances`)."""

    def __init__(self, step_pattern: str = "hv", backend: str = "auto", batch_size: int = 128,
                 device: str = "cpu", layout: Optional[str] = None):
        self.step_pattern = step_pattern
        self.backend = backend
        self.batch_size = batch_size
        self.device = device
        self.layout = layout

    def fit(self, X, y):
        """Store the training series ``X`` with labels ``y``."""
        from ..alignment.backend import check_step_pattern
        check_step_pattern(self.step_pattern)
        self.train_, self.classes_ = fit_inputs(X, y, self.layout)
        self.n_features_in_ = self.train_.index.feature_size
        return self

    def _class_distances(self, tensors) -> np.ndarray:
        from ..baselines.classic import knn_class_distances
        from ..device import resolve_device
        dist, _ = knn_class_distances(self.train_, _unlabelled(tensors), self.step_pattern,
                                      self.backend, self.batch_size,
                                      resolve_device(self.device))
        return dist.numpy()


class NearestDBACentroid(DistanceClassifier):
    """Per-class DBA centroids (as DejaVid's initialisation) with unit weights: DejaVid
    before training.  ``centroids_`` [C, K, F]."""

    def __init__(self, num_timesteps=D.MODEL["num_timesteps"], step_pattern: str = D.STEP_PATTERN,
                 sample_size_per_class: int = D.CENTROIDS["sample_size_per_class"],
                 dba_max_iter: int = D.CENTROIDS["dba_max_iter"],
                 centroid_seed: int = D.CENTROIDS["centroid_seed"], backend: str = "auto",
                 batch_size: int = 128, device: str = "cpu", cache_dir: Optional[str] = None,
                 layout: Optional[str] = None):
        self.num_timesteps = num_timesteps
        self.step_pattern = step_pattern
        self.sample_size_per_class = sample_size_per_class
        self.dba_max_iter = dba_max_iter
        self.centroid_seed = centroid_seed
        self.backend = backend
        self.batch_size = batch_size
        self.device = device
        self.cache_dir = cache_dir
        self.layout = layout

    def fit(self, X, y):
        """Compute the centroids of series ``X`` per label of ``y``."""
        from ..model.centroids import load_or_compute_centroids
        from ..config.settings import CentroidSpec
        spec = CentroidSpec(self.num_timesteps, self.step_pattern, self.sample_size_per_class,
                            self.dba_max_iter, self.centroid_seed, self.backend)
        train_ds, classes = fit_inputs(X, y, self.layout)
        spec = spec.resolved(train_ds.index.lengths)   # num_timesteps 'auto': median length
        with quiet_cpu():
            self.centroids_, _ = load_or_compute_centroids(train_ds, spec, self.cache_dir,
                                                           progress=False, log=lambda *a: None)
        self.classes_ = classes
        self.n_features_in_ = train_ds.index.feature_size
        return self

    def _class_distances(self, tensors) -> np.ndarray:
        from ..baselines.classic import centroid_distances
        from ..device import resolve_device
        dist, _ = centroid_distances(self.centroids_, _unlabelled(tensors), self.step_pattern,
                                     self.backend, self.batch_size, resolve_device(self.device))
        return dist.numpy()
