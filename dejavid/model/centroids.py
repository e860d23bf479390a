"""Per-class centroid series by DTW barycenter averaging, cached on disk
(docs/DESIGN.md section 5)."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as Fn
from tqdm import tqdm

from ..alignment.op import align, dba_accumulate
from ..data.dataset import DataIndex
from ..data.store import device_free_bytes
from ..io import atomic_torch_save, check_writable_dir
from ..config.settings import ALL_SERIES, CentroidSpec

# 2: the medoid leaves out each series' distance to itself (caches of version 1 started
# DBA from a medoid that counted it, so they are recomputed, not reused)
CACHE_VERSION = 2
# An interrupted centroid computation loses at most this much work.
PARTIAL_SAVE_SECONDS = 30.0


def resample(x: torch.Tensor, K: int) -> torch.Tensor:
    """[T, F] -> [K, F] by linear interpolation with aligned corners (T = 1 is repeated)."""
    if x.shape[0] == 1:
        return x.expand(K, -1).clone()
    return Fn.interpolate(x.t().unsqueeze(0), size=K, mode="linear",
                          align_corners=True).squeeze(0).t().contiguous()


def _packed(samples) -> tuple[torch.Tensor, torch.Tensor]:
    """[S, K, F] (or a list of S series [T_s, F]) -> (x [sum T_s, F], offsets [S + 1])."""
    if isinstance(samples, (list, tuple)):
        lengths = torch.tensor([0] + [len(s) for s in samples], dtype=torch.int64)
        return torch.cat(list(samples)), torch.cumsum(lengths, 0)
    S, K, F = samples.shape
    return samples.reshape(S * K, F), torch.arange(S + 1, dtype=torch.int64) * K


def pairwise_dtw(samples: torch.Tensor, step_pattern: str, backend: str = "auto",
                 band: Optional[float] = None, open_ends: bool = False) -> torch.Tensor:
    """Unit-weight DTW distance between every pair of series: [S, K, F] -> [S, S]."""
    x, offsets = _packed(samples)
    zeros = torch.zeros_like(samples)
    with torch.no_grad():
        dist, _ = align(x, offsets, samples, zeros, step_pattern, backend=backend, band=band,
                        open_ends=open_ends)
    return dist  # [S (as sample), S (as centroid)]


def _without_self(d: torch.Tensor) -> torch.Tensor:
    """[S, S] pairwise distances with each series' distance to itself set to 0.

    Under ``hv`` that distance is the cost of its own staircase of 2K - 1 cells, which
    differs between series (docs/DESIGN.md section 5), so it is left out of every sum."""
    return d.masked_fill(torch.eye(len(d), dtype=torch.bool, device=d.device), 0)


def medoid_index(samples: torch.Tensor, step_pattern: str, backend: str = "auto",
                 band: Optional[float] = None, open_ends: bool = False) -> int:
    """Index of the series with the smallest summed DTW distance to the others (first on
    ties); the series' distance to itself is left out (:func:`_without_self`).  With
    ``open_ends`` the distance of each series to the others as centroids (asymmetric:
    a series that holds the others' stretches is near them)."""
    d = pairwise_dtw(samples, step_pattern, backend, band, open_ends)
    if open_ends:
        d = d.t()
    return int(torch.argmin(_without_self(d).sum(1)))


def k_medoids(d: torch.Tensor, m: int, max_iter: int = 50) -> list[list[int]]:
    """Clusters of S series from their pairwise distances ``d`` [S, S]: m lists of indices,
    each led by its medoid (m <= S), deterministic.

    The first medoid is the overall medoid; each further one is the series that lowers
    the summed distance to the nearest medoid the most (PAM's BUILD).  Then, until no
    medoid changes: every series joins its nearest medoid (a medoid its own), and each
    cluster's medoid becomes the member with the smallest summed distance to the others.
    Distances are symmetrised ((d + d^T) / 2) and self-distances left out.
    """
    d = _without_self((d + d.t()) / 2).double()
    S = d.shape[0]
    m = max(1, min(m, S))
    medoids = [int(torch.argmin(d.sum(1)))]
    nearest = d[:, medoids[0]].clone()
    while len(medoids) < m:
        gain = torch.minimum(nearest.view(-1, 1), d).sum(0)        # [S] total if added
        gain[medoids] = float("inf")
        medoids.append(int(torch.argmin(gain)))
        nearest = torch.minimum(nearest, d[:, medoids[-1]])
    for _ in range(max_iter):
        assign = torch.argmin(d[:, medoids], 1)
        assign[medoids] = torch.arange(m)
        new = []
        for k in range(m):
            members = (assign == k).nonzero().flatten()
            within = d[members][:, members].sum(1)
            new.append(int(members[torch.argmin(within)]))
        if new == medoids:
            break
        medoids = new
    assign = torch.argmin(d[:, medoids], 1)
    assign[medoids] = torch.arange(m)
    return [[medoids[k]] + [int(i) for i in (assign == k).nonzero().flatten()
                            if int(i) != medoids[k]] for k in range(m)]


def class_prototypes(samples: torch.Tensor, spec: CentroidSpec, raw=None) -> torch.Tensor:
    """Prototype series of one class from its sampled series [S, K, F]: [m, K, F] with
    m = min(spec.centroids_per_class, S).

    One prototype (the paper): DBA from the medoid.  Several: the series are clustered by
    :func:`k_medoids` under the unit-weight alignment distance, and each cluster gets
    DBA over its members from its medoid.  ``raw`` (the same series before resampling,
    ``centroid_init: raw``): DBA averages those instead, from the same resampled
    start, so a series' own time scale is kept (docs/DESIGN.md section 5)."""
    step_pattern, backend, band = spec.step_pattern, spec.backend, spec.band
    ends = spec.open_ends
    over = samples if raw is None else raw
    if spec.centroids_per_class == ALL_SERIES:
        # Every series its own prototype: as resampled, or (raw) the DBA of that one
        # series from its resampled start, which averages the steps matched to each of K.
        if raw is None:
            return samples.clone()
        return torch.stack([dba([x], samples[n], step_pattern, spec.dba_max_iter, backend,
                                band=band, open_ends=ends) for n, x in enumerate(raw)])
    if spec.centroids_per_class == 1:
        start = samples[medoid_index(samples, step_pattern, backend, band, ends)]
        return dba(over, start, step_pattern, spec.dba_max_iter, backend, band=band,
                   open_ends=ends)[None]
    d = pairwise_dtw(samples, step_pattern, backend, band, ends)
    clusters = k_medoids(d, spec.centroids_per_class)
    return torch.stack([dba([over[n] for n in members] if raw is not None else over[members],
                            samples[members[0]], step_pattern, spec.dba_max_iter, backend,
                            band=band, open_ends=ends) for members in clusters])


def dba(samples: torch.Tensor, init: torch.Tensor, step_pattern: str, max_iter: int,
        backend: str = "auto", skip_converged: bool = True,
        band: Optional[float] = None, open_ends: bool = False) -> torch.Tensor:
    """DTW barycenter averaging of samples [S, K, F] (or a list of series [T_s, F] of any
    length) from ``init`` [K, F], unit weights.

    Each iteration aligns every sample to the centroid and replaces centroid
    step i by the mean of all sample steps matched to it (with ``open_ends`` a step
    that no sample step reaches keeps its value).  When the paths stop
    changing the centroid has reached a fixed point, so later iterations would
    return it unchanged and are skipped (``skip_converged=False`` runs them anyway,
    for benchmarks).
    """
    x, offsets = _packed(samples)
    mu = init.clone()
    zeros = torch.zeros_like(mu)[None]
    prev = None
    with torch.no_grad():
        for _ in range(max_iter):
            _, paths = align(x, offsets, mu[None], zeros, step_pattern, backend=backend,
                             band=band, open_ends=open_ends)
            if skip_converged and prev is not None and torch.equal(paths, prev):
                break
            sums, counts = dba_accumulate(x, offsets, paths, backend=backend,
                                          open_ends=open_ends)
            # a step that no sample step reaches (only with open ends) keeps its value
            mu = torch.where((counts > 0).unsqueeze(1), sums / counts.clamp(min=1).unsqueeze(1),
                             mu)
            prev = paths
    return mu


def dba_cost(samples: torch.Tensor, mu: torch.Tensor, step_pattern: str,
             backend: str = "auto") -> float:
    """Summed unit-weight DTW cost of all samples to centroid ``mu`` [K, F]."""
    x, offsets = _packed(samples)
    with torch.no_grad():
        dist, _ = align(x, offsets, mu[None], torch.zeros_like(mu)[None], step_pattern,
                        backend=backend)
    return float(dist.sum())


def centroid_meta(index: DataIndex, train_split: str, spec: CentroidSpec) -> dict:
    """Every input that determines the centroids (``spec.backend`` does not: all backends
    give the same centroids)."""
    meta = {
        "version": CACHE_VERSION,
        "data_fingerprint": index.fingerprint(train_split),
        "num_timesteps": spec.num_timesteps,
        "centroid_seed": spec.seed,
        "sample_size_per_class": spec.sample_size_per_class,
        "dba_max_iter": spec.dba_max_iter,
        "step_pattern": spec.step_pattern,
        "feature_size": index.feature_size,
        "num_classes": index.num_classes,
    }
    # Options added later, in the meta only when not at the paper's value, so that the
    # caches of earlier versions stay valid.
    if spec.centroids_per_class != 1:
        meta["centroids_per_class"] = spec.centroids_per_class
    if spec.band is not None:
        meta["band"] = spec.band
    if spec.open_ends:
        meta["open_ends"] = True
    if spec.init != "resample":
        meta["centroid_init"] = spec.init
    if getattr(index, "feature_stats", None) is not None:
        # Centroids of standardised features (their statistics follow from the training
        # data, which the fingerprint covers); absent when off, so older caches stay valid.
        meta["standardize"] = True
    return meta


def cache_path(cache_dir: str | Path, meta: dict) -> Path:
    """The cache file of the centroids that ``meta`` describes."""
    key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:20]
    return Path(cache_dir) / f"centroids_{key}.pt"


def centroid_bytes(K: int, F: int, C: int, threads: int) -> int:
    """Memory the centroid computation needs at the least, in bytes: the medoid search and
    DBA align series resampled to K steps with each other, each running alignment holding a
    [K, K] float32 table (one per thread, and one more for the result), beside the
    [C, K, F] centroids."""
    return 4 * (threads + 1) * K * K + 4 * C * K * F


def check_centroid_size(K: int, F: int, C: int, available: Optional[int] = None,
                        threads: Optional[int] = None) -> None:
    """ValueError, before anything is allocated, when K centroid steps cannot be computed
    in the ``available`` memory (default: the host's free memory)."""
    threads = threads or len(os.sched_getaffinity(0))
    available = device_free_bytes(torch.device("cpu")) if available is None else available
    need = centroid_bytes(K, F, C, threads)
    if need > available:
        raise ValueError(f"num_timesteps K = {K} needs at least {need / 2**30:.3g} GiB to compute "
                         f"the centroids (aligning two {K}-step series takes a {K} x {K} table, "
                         f"one per thread, {threads} threads) but {available / 2**30:.3g} GiB are "
                         f"free; use a smaller num_timesteps ('auto' takes the median training "
                         f"length, clipped to [8, 128])")


def compute_centroids(train_ds, spec: CentroidSpec, progress: bool = True,
                      partial: Optional[Path] = None, meta: Optional[dict] = None,
                      log=print) -> tuple[torch.Tensor, float]:
    """(mu [C, K, F] float32 from the training videos ``train_ds``, compute seconds); with
    ``spec.centroids_per_class`` M > 1, mu [C, M, K, F] whose class c fills its first
    min(M, sampled videos) rows, NaN after them (see :func:`flatten_prototypes`).

    ``train_ds``: a dataset of (x [T, F], label, row) with ``index`` and ``rows``
    (:class:`dejavid.data.dataset.TSEDataset`, :class:`dejavid.data.arrays.ArrayDataset`).  Per
    class, ``spec.sample_size_per_class`` videos drawn with ``spec.seed`` are resampled
    to K steps; DBA starts from their medoid (:func:`class_prototypes`).

    With ``partial``, the classes done so far (and the sampling RNG's state) are
    saved there atomically at most every ``PARTIAL_SAVE_SECONDS``, and a matching
    partial file from an interrupted run is continued: the result is the same as
    an uninterrupted computation.  ``meta`` (the cache's :func:`centroid_meta`)
    tags the partial file; it is required with ``partial``.
    """
    K = spec.num_timesteps
    rng = np.random.default_rng(spec.seed)
    ds, index = train_ds, train_ds.index
    check_centroid_size(K, index.feature_size, index.num_classes)
    rows_of_class = positions_of_class(ds)
    M = spec.centroids_per_class
    if M == ALL_SERIES:
        M = max(min(spec.sample_size_per_class, len(r)) for r in rows_of_class)
    mu = torch.empty(index.num_classes, *((M,) if M > 1 else ()), K, index.feature_size)
    start, seconds = 0, 0.0
    state = _read_partial(partial, meta) if partial is not None else None
    if state is not None:
        start, seconds = state["done"], state["seconds"]
        mu[:start] = state["mu"][:start]
        rng.bit_generator.state = state["rng"]
        log(f"continuing the interrupted centroid computation at class {start + 1}/{index.num_classes}")
    t_start, last_save = time.time() - seconds, time.time()
    for c in tqdm(range(start, index.num_classes), desc="centroids", unit="class",
                  initial=start, total=index.num_classes, disable=not progress):
        chosen = _draw(rng, rows_of_class[c], spec.sample_size_per_class)
        series = [ds[int(n)][0] for n in chosen]
        samples = torch.stack([resample(x, K) for x in series])              # [S, K, F]
        protos = class_prototypes(samples, spec,
                                  series if spec.init == "raw" else None)    # [m, K, F]
        if M > 1:
            mu[c, :len(protos)] = protos
            mu[c, len(protos):] = float("nan")   # a class with fewer videos than M
        else:
            mu[c] = protos[0]
        due = time.time() - last_save >= PARTIAL_SAVE_SECONDS
        if partial is not None and c + 1 < index.num_classes and due:
            atomic_torch_save({"meta": meta, "done": c + 1, "mu": mu[:c + 1].clone(),
                               "rng": rng.bit_generator.state, "seconds": time.time() - t_start},
                              partial)
            last_save = time.time()
    return mu, time.time() - t_start


def positions_of_class(ds) -> list[list[int]]:
    """Per class, the dataset positions of its videos in ``ds``, ascending."""
    index = ds.index
    out = [[] for _ in range(index.num_classes)]
    for n, k in enumerate(ds.rows):
        out[index.labels[k]].append(n)
    return out


def _draw(rng: np.random.Generator, members: list[int], size: int) -> np.ndarray:
    """The sorted positions of up to ``size`` videos of one class, drawn without
    replacement (all of them when the class has no more)."""
    members = np.array(members)
    return np.sort(rng.choice(members, size=min(size, len(members)), replace=False))


def sampled_rows(train_ds, spec: CentroidSpec) -> torch.Tensor:
    """The index rows [P] of the videos :func:`compute_centroids` samples, class by class,
    in its order: with ``centroids_per_class: all`` the video behind each prototype of
    :func:`flatten_prototypes` (so training can leave a video's own prototype out)."""
    rng = np.random.default_rng(spec.seed)
    rows = [np.asarray(train_ds.rows)[_draw(rng, members, spec.sample_size_per_class)]
            for members in positions_of_class(train_ds)]
    return torch.from_numpy(np.concatenate(rows).astype(np.int64))


def flatten_prototypes(mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu [P, K, F], proto_class [P]) from :func:`compute_centroids`' result: [C, K, F]
    as it is (one per class), [C, M, K, F] without the unused (NaN) rows, class by class."""
    if mu.dim() == 3:
        return mu, torch.arange(mu.shape[0])
    used = ~torch.isnan(mu).flatten(2).any(2)                                # [C, M]
    proto_class = torch.arange(mu.shape[0]).repeat_interleave(used.sum(1))
    return mu[used], proto_class


def load_or_compute_centroids(train_ds, spec: CentroidSpec, cache_dir: Optional[str | Path],
                              progress: bool = True,
                              log=print) -> tuple[torch.Tensor, Optional[Path]]:
    """(mu [C, K, F], cache file): the cached centroids for these exact inputs, or
    computed (:func:`compute_centroids`) and cached under ``cache_dir``; [C, M, K, F] with
    ``centroids_per_class`` M > 1 (:func:`flatten_prototypes` flattens them).

    An interrupted computation leaves a ``.partial`` file beside the cache path
    and the next call continues from it.  ``cache_dir=None`` computes without any
    file and returns (mu, None).
    """
    index = train_ds.index
    split = index.splits[int(train_ds.rows[0])]
    meta = centroid_meta(index, split, spec)
    if cache_dir is None:
        return compute_centroids(train_ds, spec, progress, log=log)[0], None
    path = cache_path(cache_dir, meta)
    cached = _read_cache(path, meta)
    if cached is not None:
        log(f"reusing cached centroids {path}")
        return cached, path
    try:   # before hours of work, not at the write after them (a read-only cache_dir)
        check_writable_dir(cache_dir, "cache_dir")
    except ValueError as exc:
        raise ValueError(f"no cached centroids for these data and settings ({path.name}), and "
                         f"they could not be kept after computing them: {exc}. Make cache_dir "
                         f"writable or point it at a writable folder") from None
    log(f"computing centroids ({index.num_classes} classes, K = {meta['num_timesteps']}, "
        f"up to {meta['sample_size_per_class']} videos per class, "
        f"{meta['dba_max_iter']} DBA iterations) -> {path}")
    partial = partial_path(path)
    mu, seconds = compute_centroids(train_ds, spec, progress, partial, meta, log=log)
    # compute_centroids keeps the partial file until the very end; the cache replaces it.
    atomic_torch_save({"mu": mu, "meta": meta, "label_values": index.label_values,
                       "seconds": seconds}, path)
    partial.unlink(missing_ok=True)
    return mu, path


def partial_path(path: Path) -> Path:
    """Where an unfinished computation of the cache file ``path`` keeps its progress."""
    return path.with_name(path.stem + ".partial.pt")


def cached_seconds(path: str | Path) -> Optional[float]:
    """Compute time recorded in a centroid cache file (None for caches written before it was).

    Memory-mapped: only the small header is read, not the [C, K, F] centroids again.
    """
    blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return blob.get("seconds") if isinstance(blob, dict) else None


def _read_partial(path: Path, meta: dict) -> Optional[dict]:
    """The saved progress of an interrupted computation with these exact inputs, or None."""
    if not path.is_file():
        return None
    try:
        # The RNG state is a plain dict of ints and strings: safe for weights_only.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None  # unreadable progress costs a recomputation, never a wrong result
    if not isinstance(state, dict) or state.get("meta") != meta:
        return None
    return state


def _read_cache(path: Path, meta: dict) -> Optional[torch.Tensor]:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"centroid cache {path} is unreadable ({exc}); delete it to recompute") from exc
    if not isinstance(blob, dict) or blob.get("meta") != meta:
        return None  # a hash collision or an edited file: never trust it
    return blob["mu"]
