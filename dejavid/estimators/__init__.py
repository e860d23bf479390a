"""scikit-learn-style estimators: DejaVidClassifier (fit(X, y) on series of any length,
trained by :func:`dejavid.training.fit`) and the classic baselines with the same interface.

    classifier   DejaVidClassifier and the shared DistanceClassifier base
    baselines    MeanPoolLogisticRegression, KNeighborsDTW, NearestDBACentroid
    layout       X as [N, T, F] (tslearn, torch) or (n_cases, n_channels, n_timepoints)
                 (aeon, sktime): the ``layout`` parameter
    params       hyper-parameter checks at fit
    threads      CPU threads that do not spin in a program that imported torch first
"""
from __future__ import annotations

from .. import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".classifier": ["DejaVidClassifier", "DistanceClassifier", "NotFittedError"],
    ".baselines": ["MeanPoolLogisticRegression", "KNeighborsDTW", "NearestDBACentroid"],
})
