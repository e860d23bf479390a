"""DejaVid: learned temporal matching of variable-length embedding sequences.

Public API (imported on first use, so ``import dejavid`` stays light):

    DejaVid             the layer: distances of variable-length samples to C learned centroid series
    align               the differentiable alignment op under it (backend dispatch)
    dba                 DTW barycenter averaging of equal-length series (centroid initialisation)
    fit                 the training loop of train_dejavid.py, as a function
    load_index          read and validate an on-disk dataset (docs/DESIGN.md section 1)
    DejaVidClassifier   scikit-learn-style estimator: fit(X, y) on lists of [T, F] arrays

The package is one subpackage per layer; each may import only the layers below it
(tests/test_layers.py holds the rule):

    errors, io, device   shared leaves, used by every layer
    runtime              process settings for the scripts (import first, before torch)
    alignment            the alignment op and its backends
    data                 data sets on disk and in memory, the feature store, batches
    config               config files, command line, resolved settings
    model                the DejaVid layer, DBA centroids, class ranking
    baselines            the baselines that never reach the training engine
    training             fit() and its parts
    estimators           scikit-learn-style estimators
    report, interop      reproduce.py's table and figures; the original code's files
    extract              raw videos to TSEs: sources, sampling, encoders (extract_tse.py)

``import dejavid`` does not change the environment; the scripts import
:mod:`dejavid.runtime` first for OpenMP's wait policy and numba's vector width.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys


def lazy_exports(package: str, exports: dict[str, list[str]]):
    """``(__getattr__, __dir__, __all__)`` for ``package`` whose public names are imported
    on first access.  ``exports`` maps a module (absolute, or relative to ``package``) to
    the names it defines; importing the package imports none of them."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name in where:
            value = getattr(importlib.import_module(where[name], package), name)
            setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__, list(where)


__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "dejavid.model.layer": ["DejaVid"],
    "dejavid.alignment.op": ["align"],
    "dejavid.model.centroids": ["dba"],
    "dejavid.training.run": ["fit"],
    "dejavid.data.dataset": ["load_index"],
    "dejavid.estimators.classifier": ["DejaVidClassifier"],
})

# Module paths of the public API before the package was split into layers.  They keep
# working (and unpickle older estimators) as aliases of the modules' new homes; the
# packages dejavid.alignment, dejavid.data and dejavid.model export their public names.
MOVED = {
    "dejavid.train": "dejavid.training.run",
    "dejavid.centroids": "dejavid.model.centroids",
    "dejavid.settings": "dejavid.config.settings",
    "dejavid.estimator": "dejavid.estimators.classifier",
    "dejavid.baseline_estimators": "dejavid.estimators.baselines",
    "dejavid.temporal_heads": "dejavid.baselines.temporal_heads",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path of :data:`MOVED` as the module at its new path (one module
    object under both names)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        pass


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())
