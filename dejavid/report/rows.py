"""Baseline rows of reproduce.py's table, on the same data and splits as DejaVid.

    meanpool_lr     mean over time + logistic regression (scikit-learn)
    knn_dtw         1-nearest-neighbour DTW with unit weights: every training video is a reference
    dba_centroid    nearest DBA centroid with unit weights (DejaVid before training)
    estimator rows  any estimator of :data:`dejavid.report.table.ROWS` (e.g. the encoder's own
                    clip-averaged logits), fitted and scored by :func:`estimator_row`

Each takes datasets of (x [T, F], label, row) -- on-disk (:class:`dejavid.data.dataset.dataset.TSEDataset`)
or in memory (:class:`dejavid.data.dataset.arrays.ArrayDataset`) -- and returns a
:class:`dejavid.report.table.Result`; :func:`run_baseline` caches that result on disk.  The
computations are in :mod:`dejavid.report.rows.classic`; the same methods as
scikit-learn-style estimators are in :mod:`dejavid.estimators.baselines`.  Nothing here
reaches the training engine.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

from ..baselines.classic import (LR_SETTINGS, centroid_distances, dataset_item, fit_pooled_lr,
                                 knn_class_distances, mean_pool)
from ..config.settings import CentroidSpec, TrainSettings
from ..data.dataset import DataIndex
from ..model.centroids import (cache_path, cached_seconds, centroid_meta, dba,
                               load_or_compute_centroids)
from ..model.metrics import topk_counts
from .table import BASELINES, ROW, TITLES, Result, Row, cached_result, format_seconds

CACHE_VERSION = 1

__all__ = ["meanpool_lr", "knn_dtw", "dba_centroid", "run_baseline", "baseline_meta",
           "estimator_row", "run_estimator_row"]


# --- (1) mean pooling + logistic regression -------------------------------------------------

def meanpool_lr(train_ds, eval_ds, seed: int = 0,
                progress: bool = False) -> Result:
    """Standardised time-averaged features, multinomial logistic regression (L2, C = 1).

    Head: C * F + C parameters (F + 1 for two classes); the standardisation folds into it.
    """
    C = train_ds.index.num_classes
    Xtr, ytr = mean_pool(train_ds, progress, "mean pooling (train)")
    Xev, yev = mean_pool(eval_ds, progress, "mean pooling (eval)")
    t0 = time.time()
    scaler, clf, converged = fit_pooled_lr(Xtr, ytr, LR_SETTINGS["C"], LR_SETTINGS["max_iter"],
                                           seed)
    train_s = time.time() - t0
    if list(clf.classes_) != list(range(C)):
        raise AssertionError("every class has a training video, so the classes are 0..C-1")
    t0 = time.time()
    proba = clf.predict_proba(scaler.transform(Xev))  # [N, C]
    top1, top5 = topk_counts(torch.from_numpy(-proba), torch.from_numpy(yev))
    eval_s = time.time() - t0
    # A standardisation folds into the linear layer, so the head is coef + intercept.
    n_params = int(clf.coef_.size + clf.intercept_.size)
    notes = f"scikit-learn, standardised means, L2 C = {LR_SETTINGS['C']:g}"
    if not converged:
        notes += f"; did not converge in {LR_SETTINGS['max_iter']} iterations"
    return Result("meanpool_lr", top1 / len(yev), top5 / len(yev), len(yev), n_params, n_params,
                  train_s, eval_s, notes)


def warm_up(feature_size: int, step_pattern: str, backend: str = "auto") -> None:
    """One tiny DBA step (alignment forward and paths) at this F, so that the timed rows
    measure the computation, not numba's one-off compilation (which the first call in a
    process pays, many times the warm computation on small data sets)."""
    dba(torch.zeros(2, 3, feature_size), torch.zeros(3, feature_size), step_pattern, 1,
        backend)


def knn_dtw(train_ds, eval_ds, step_pattern: str, backend: str = "auto",
            batch_size: int = 128, device="cpu", progress: bool = False) -> Result:
    """1-NN DTW; top-5 ranks classes by the distance to their nearest training video."""
    warm_up(train_ds.index.feature_size, step_pattern, backend)
    t0 = time.time()
    dist, labels = knn_class_distances(train_ds, eval_ds, step_pattern, backend, batch_size,
                                       device, progress)
    eval_s = time.time() - t0
    top1, top5 = topk_counts(dist, labels)
    N = len(labels)
    notes = (f"no training; stores the {len(train_ds)} training videos; {len(train_ds) * N:,} "
             f"alignments ({step_pattern}) took {format_seconds(eval_s)}")
    return Result("knn_dtw", top1 / N, top5 / N, N, 0, 0, 0.0, eval_s, notes)


# --- (3) nearest DBA centroid --------------------------------------------------------------

def dba_centroid(train_ds, eval_ds, spec: CentroidSpec, cache_dir: Optional[str | Path],
                 batch_size: int = 128, device="cpu", progress: bool = False,
                 log: Callable = print) -> Result:
    """The cached DBA centroids with unit weights: DejaVid at initialisation with w = 1."""
    existed = cache_dir is not None and cache_path(cache_dir, _centroid_meta(train_ds, spec)).is_file()
    if not existed:
        warm_up(train_ds.index.feature_size, spec.step_pattern, spec.backend)
    t0 = time.time()
    mu0, path = load_or_compute_centroids(train_ds, spec, cache_dir, progress, log)
    train_s = cached_seconds(path) if existed else time.time() - t0
    t0 = time.time()
    dist, labels = centroid_distances(mu0, eval_ds, spec.step_pattern, spec.backend, batch_size,
                                      device, progress, band=spec.band)
    top1, top5 = topk_counts(dist, labels)
    eval_s = time.time() - t0
    params = int((~mu0.isnan()).sum())   # C * K * F; the used prototypes' with M > 1
    N = len(labels)
    notes = "DejaVid before training"
    if existed:
        notes += f"; centroids from the cache {path}"
        if train_s is None:
            notes += " (a cache written without its compute time)"
    return Result("dba_centroid", top1 / N, top5 / N, N, params, 0, train_s, eval_s, notes)


def _centroid_meta(train_ds, spec: CentroidSpec) -> dict:
    index = train_ds.index
    return centroid_meta(index, index.splits[int(train_ds.rows[0])], spec)


# --- (4) estimator rows ----------------------------------------------------------------------

def _series_and_labels(ds, time_mean: bool, progress: bool, desc: str):
    """(X, y [N] class indices) of the features as stored: [N, 1, F] time-means, or a
    list of [T, F] tensors."""
    if time_mean:
        X, y = mean_pool(ds, progress, f"mean over time ({desc})", stored=True)
        return X[:, None, :], y
    X, y = [], np.empty(len(ds), dtype=np.int64)
    for n in tqdm(range(len(ds)), desc=f"loading {desc}", unit="video", leave=False,
                  disable=not progress):
        x, y[n], _ = dataset_item(ds, n, stored=True)
        X.append(x)
    return X, y


def estimator_row(row: Row, estimator, train_ds, eval_ds, progress: bool = False) -> Result:
    """Fit ``estimator`` (unfitted, from ``row.factory``) on ``train_ds`` and rank the classes
    of every ``eval_ds`` video by its ``decision_function`` (larger: more likely).

    Labels are the class indices 0..C-1, so column c of the decision is class c."""
    C = train_ds.index.num_classes
    # Estimators read the features as stored (the encoder's logit columns must stay logits;
    # the learned temporal heads standardise with their own statistics).
    Xtr, ytr = _series_and_labels(train_ds, row.time_mean, progress, "train")
    t0 = time.time()
    estimator.fit(Xtr, ytr)
    train_s = time.time() - t0
    del Xtr
    if list(getattr(estimator, "classes_", range(C))) != list(range(C)):
        raise AssertionError("every class has a training video, so the classes are 0..C-1")
    Xev, yev = _series_and_labels(eval_ds, row.time_mean, progress, "eval")
    t0 = time.time()
    scores = torch.as_tensor(np.asarray(estimator.decision_function(Xev), dtype=np.float64))
    if scores.dim() == 1 and C == 2:   # scikit-learn's binary convention: > 0 means class 1
        scores = torch.stack([-scores, scores], 1)
    top1, top5 = topk_counts(-scores, torch.from_numpy(yev))           # [N, C] distances
    eval_s = time.time() - t0
    if row.params is not None:
        head, trained = row.params(estimator)
    else:
        head, trained = estimator.head_params_, estimator.trained_params_
    N = len(yev)
    params = ", ".join(f"{k}={v!r}" for k, v in sorted(estimator.get_params().items()))
    return Result(row.method, top1 / N, top5 / N, N, int(head), int(trained), train_s, eval_s,
                  f"{type(estimator).__name__}({params})")


def run_estimator_row(method: str, estimator, out_dir: str | Path, train_ds, eval_ds,
                      settings: TrainSettings, progress: bool = False,
                      log: Callable = print) -> Result:
    """Cached :func:`estimator_row` (``out_dir/<method>.json``), keyed by the data, the
    estimator's class and its ``get_params()``."""
    row = ROW[method]
    index = train_ds.index
    meta = {"version": CACHE_VERSION, "method": method,
            "train_split": settings.data.train_split, "eval_split": settings.data.eval_split,
            "train_fingerprint": index.fingerprint(settings.data.train_split),
            "eval_fingerprint": index.fingerprint(settings.data.eval_split),
            "estimator": type(estimator).__qualname__, "time_mean": row.time_mean,
            "params": {k: repr(v) for k, v in sorted(estimator.get_params().items())}}

    def announced():
        log(f"computing {TITLES[method]}")
        return estimator_row(row, estimator, train_ds, eval_ds, progress)
    return cached_result(Path(out_dir) / f"{method}.json", meta, announced, log)


# --- cached results ------------------------------------------------------------------------

def baseline_meta(method: str, index: DataIndex, train_split: str, eval_split: str,
                  settings: TrainSettings) -> dict:
    """Every input that determines a baseline's result."""
    meta = {"version": CACHE_VERSION, "method": method,
            "train_split": train_split, "eval_split": eval_split,
            "train_fingerprint": index.fingerprint(train_split),
            "eval_fingerprint": index.fingerprint(eval_split)}
    if method == "meanpool_lr":
        meta.update(LR_SETTINGS, seed=settings.loop.seed)
    elif method == "knn_dtw":
        meta["step_pattern"] = settings.centroids.step_pattern
    elif method == "dba_centroid":
        meta["centroids"] = centroid_meta(index, train_split, settings.centroids)
    else:
        raise ValueError(f"unknown baseline {method!r}; baselines: {', '.join(BASELINES)}")
    return meta


def run_baseline(method: str, out_dir: str | Path, train_ds, eval_ds, settings: TrainSettings,
                 cache_dir: Optional[str | Path], device, progress: bool = False,
                 log: Callable = print) -> Result:
    """Cached result of one baseline (``out_dir/<method>.json``), computing it when needed.

    ``cache_dir``: where the DBA centroids are cached (shared with training runs)."""
    bs = settings.loop.eval_batch_size
    spec = settings.centroids
    compute = {
        "meanpool_lr": lambda: meanpool_lr(train_ds, eval_ds, settings.loop.seed, progress),
        "knn_dtw": lambda: knn_dtw(train_ds, eval_ds, spec.step_pattern, spec.backend, bs,
                                   device, progress),
        "dba_centroid": lambda: dba_centroid(train_ds, eval_ds, spec, cache_dir, bs, device,
                                             progress, log),
    }[method]
    index = train_ds.index
    meta = baseline_meta(method, index, settings.data.train_split, settings.data.eval_split,
                         settings)

    def announced():
        log(f"computing {TITLES[method]}")
        return compute()
    return cached_result(Path(out_dir) / f"{method}.json", meta, announced, log)

