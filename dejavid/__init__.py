"""DejaVid: learned temporal matching of variable-length embedding sequences.

Public API (imported on first use, so ``import dejavid`` stays light):

    DejaVid             the layer: distances of variable-length samples to C learned centroid series
    align               the differentiable alignment op under it (backend dispatch)
    dba                 DTW barycenter averaging of equal-length series (centroid initialisation)
    fit                 the training loop of train_dejavid.py, as a function
    load_index          read and validate an on-disk dataset (docs/DESIGN.md section 1)
    DejaVidClassifier   scikit-learn-style estimator: fit(X, y) on lists of [T, F] arrays

``import dejavid`` does not change the environment; the scripts import
:mod:`dejavid.runtime` first for OpenMP's wait policy and numba's vector width.
"""
from __future__ import annotations

import importlib

# name -> module that defines it; resolved by __getattr__ on first access.
_EXPORTS = {
    "DejaVid": "dejavid.model",
    "align": "dejavid.alignment",
    "dba": "dejavid.centroids",
    "fit": "dejavid.train",
    "load_index": "dejavid.data",
    "DejaVidClassifier": "dejavid.estimator",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'dejavid' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
