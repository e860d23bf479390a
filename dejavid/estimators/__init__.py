"""scikit-learn-style estimators: DejaVidClassifier (fit(X, y) on lists of [T, F] arrays,
trained by :func:`dejavid.training.fit`) and the classic baselines with the same interface.

    classifier   DejaVidClassifier and the shared DistanceClassifier base
    baselines    MeanPoolLogisticRegression, KNeighborsDTW, NearestDBACentroid
"""
from __future__ import annotations

from .. import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".classifier": ["DejaVidClassifier", "DistanceClassifier", "NotFittedError"],
    ".baselines": ["MeanPoolLogisticRegression", "KNeighborsDTW", "NearestDBACentroid"],
})
