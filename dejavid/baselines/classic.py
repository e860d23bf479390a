"""The classic baselines' computations, without the training engine.

    mean_pool, fit_pooled_lr    mean over time + logistic regression (scikit-learn)
    knn_class_distances         1-nearest-neighbour DTW with unit weights: every training
                                video is a reference
    centroid_distances          distance to given centroids with unit weights (DejaVid
                                before training, when the centroids are DBA's)

They take datasets of (x [T, F], label, row) -- on-disk (:class:`dejavid.data.dataset.dataset.TSEDataset`)
or in memory (:class:`dejavid.data.dataset.arrays.ArrayDataset`).  The table rows built on them
are in :mod:`dejavid.report.rows`, the scikit-learn-style estimators in
:mod:`dejavid.estimators.baselines`.  This module uses the alignment op, never the
training engine.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from tqdm import tqdm

from ..alignment.op import align
from ..data.dataset import collate_packed
from ..errors import MissingDependency
from ..model.centroids import flatten_prototypes

LR_SETTINGS = {"standardize": True, "C": 1.0, "max_iter": 1000}
# Upper bound on B * references * K per align call in 1-NN (bounds the int32 paths it returns).
_KNN_BLOCK = 1 << 22

__all__ = ["mean_pool", "fit_pooled_lr", "knn_class_distances", "centroid_distances",
           "dataset_item", "LR_SETTINGS"]


# --- (1) mean pooling + logistic regression -------------------------------------------------

def _sklearn():
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler
    except ImportError as exc:
        raise MissingDependency("the mean-pooling baseline needs scikit-learn: pip install "
                                "scikit-learn (or pip install -e '.[baselines]'), or leave "
                                "meanpool_lr out of --methods") from exc
    return LogisticRegression, StandardScaler


def dataset_item(ds, n: int, stored: bool):
    """The n-th item; with ``stored``, x as stored (a TSEDataset's ``item(n, False)``)."""
    return ds.item(n, standardized=False) if stored else ds[n]


def mean_pool(ds, progress: bool = False, desc: str = "mean pooling", stored: bool = False):
    """Mean over time of every video: (X [N, F] float64, y [N] int64); ``stored``: of
    the features as stored, not standardised."""
    X = np.empty((len(ds), ds.index.feature_size), dtype=np.float64)
    y = np.empty(len(ds), dtype=np.int64)
    for n in tqdm(range(len(ds)), desc=desc, unit="video", leave=False, disable=not progress):
        x, y[n], _ = dataset_item(ds, n, stored)
        X[n] = x.double().mean(0).numpy()
    return X, y


def fit_pooled_lr(X: np.ndarray, y: np.ndarray, C: float = 1.0, max_iter: int = 1000,
                  seed: int = 0):
    """(scaler, logistic regression, converged) fitted on pooled features X [N, F]; a
    convergence warning is reported through ``converged``, other warnings pass on."""
    LogisticRegression, StandardScaler = _sklearn()
    scaler = StandardScaler()
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(scaler.fit_transform(X), y)
    converged = True
    for w in caught:
        if "converge" in str(w.message).lower():
            converged = False
        else:
            warnings.warn(w.message, w.category, stacklevel=3)
    return scaler, clf, converged


def knn_class_distances(train_ds, eval_ds, step_pattern: str,
                        backend: str = "auto", batch_size: int = 128, device="cpu",
                        progress: bool = False, band=None,
                        open_ends: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-weight DTW from every evaluation video to its nearest training video of each class.

    Returns (dist [N_eval, C], labels [N_eval]).  DTW runs between the raw
    variable-length series (no resampling) with the weighted-L1 local cost and
    step pattern of docs/DESIGN.md section 3, through :func:`dejavid.alignment.op.align` with
    theta = 0: every training video plays the part of a centroid.  ``align``
    wants centroids of one length, so the training videos are grouped by length.
    With this cost both step patterns give DTW(x, y) = DTW(y, x).  Distances are
    not normalised by path length (an 'hv' path has K + T - 1 cells), exactly as
    DejaVid's own distance, so shorter references tend to be nearer.  ``band`` (a
    fraction, None: none) restricts every alignment to the warping band of
    :func:`dejavid.alignment.backend.band_rows` (the classic Sakoe-Chiba window on equal
    lengths).  ``open_ends``: every evaluation video is matched in full to any stretch of
    each training video (subsequence DTW, docs/DESIGN.md section 3.3.2; not symmetric).
    """
    device = torch.device(device)
    C = train_ds.index.num_classes
    by_len: dict[int, list] = {}
    for n in tqdm(range(len(train_ds)), desc="loading references", unit="video", leave=False,
                  disable=not progress):
        x, y, _ = train_ds[n]
        by_len.setdefault(x.shape[0], []).append((x, y))
    groups = []  # (mu [n, L, F], theta zeros [n, L, F], labels [n])
    for L in sorted(by_len):
        mu = torch.stack([x for x, _ in by_len[L]]).to(device)
        labels = torch.tensor([y for _, y in by_len[L]], dtype=torch.int64, device=device)
        groups.append((mu, torch.zeros_like(mu), labels))
    out, out_labels = [], []
    batches = [list(range(s, min(len(eval_ds), s + batch_size)))
               for s in range(0, len(eval_ds), batch_size)]
    with torch.no_grad():
        for idx in tqdm(batches, desc="1-NN DTW", unit="batch", leave=False,
                        disable=not progress):
            batch = collate_packed([eval_ds[n] for n in idx]).to(device)
            B = len(idx)
            best = torch.full((B, C), float("inf"), device=device)  # [B, C]
            for mu, zeros, labels in groups:
                step = max(1, _KNN_BLOCK // (B * mu.shape[1]))
                for s in range(0, mu.shape[0], step):
                    d, _ = align(batch.x, batch.offsets, mu[s:s + step], zeros[s:s + step],
                                 step_pattern, backend=backend, band=band,
                                 open_ends=open_ends)                           # [B, n]
                    best.scatter_reduce_(1, labels[s:s + step].expand(B, -1), d, reduce="amin")
            out.append(best.cpu())
            out_labels.append(batch.labels.cpu())
    return torch.cat(out), torch.cat(out_labels)


@torch.no_grad()
def centroid_distances(mu: torch.Tensor, ds, step_pattern: str, backend: str = "auto",
                       batch_size: int = 128, device="cpu", progress: bool = False,
                       band=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-weight DejaVid distance of every video of ``ds`` to the centroids ``mu``
    [C, K, F], free path: (dist [N, C], labels [N]) -- DejaVid at its initialisation with
    w = 1, evaluated as :func:`dejavid.training.engine.evaluate` does.  With several
    prototypes per class (``mu`` [C, M, K, F] from ``centroids_per_class`` M > 1, NaN rows
    unused) a class's distance is that of its nearest prototype; ``band`` as in
    :func:`knn_class_distances`."""
    device = torch.device(device)
    proto_class = None
    if mu.dim() == 4:
        mu, proto_class = flatten_prototypes(mu)
        proto_class = proto_class.to(device)
    mu = mu.to(device=device, dtype=torch.float32)
    zeros = torch.zeros_like(mu)
    out, out_labels = [], []
    for s in tqdm(range(0, len(ds), batch_size), desc="nearest centroid", unit="batch",
                  leave=False, disable=not progress):
        batch = collate_packed([ds[n] for n in range(s, min(len(ds), s + batch_size))]).to(device)
        d, _ = align(batch.x, batch.offsets, mu, zeros, step_pattern, backend=backend,
                     band=band)                                                     # [B, P]
        if proto_class is not None:
            d = d.new_full((d.shape[0], int(proto_class.max()) + 1), float("inf")).scatter_reduce_(
                1, proto_class.expand(d.shape[0], -1), d, reduce="amin")          # [B, C]
        out.append(d.cpu())
        out_labels.append(batch.labels.cpu())
    return torch.cat(out), torch.cat(out_labels)


