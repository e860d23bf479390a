"""Baselines beside DejaVid on the same on-disk data and splits, and the comparison table.

    meanpool_lr     mean over time + logistic regression (scikit-learn)
    knn_dtw         1-nearest-neighbour DTW with unit weights: every training video is a reference
    dba_centroid    nearest DBA centroid with unit weights (DejaVid before training)
    dejavid_frozen  DejaVid, learned weights only (centroids frozen)   } trained by train_dejavid;
    dejavid         DejaVid, centroids and weights learned              } read back by trained_result

Each baseline result is cached as a small JSON file whose ``meta`` records every
input that determines it (data fingerprints of both splits, the method's
settings); a cached result is reused only when its meta matches exactly.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

from .align import align
from .centroids import cache_path, cached_seconds, centroid_meta, load_or_compute_centroids
from .data import DataIndex, TSEDataset, collate_packed
from .engine import evaluate, load_checkpoint, rank_classes
from .io import atomic_write_text
from .model import DejaVid

METHODS = ("meanpool_lr", "knn_dtw", "dba_centroid", "dejavid_frozen", "dejavid")
BASELINES = METHODS[:3]
TRAINED = METHODS[3:]
TITLES = {
    "meanpool_lr": "mean pooling + logistic regression",
    "knn_dtw": "1-NN DTW, unit weights",
    "dba_centroid": "nearest DBA centroid, unit weights",
    "dejavid_frozen": "DejaVid, learned weights only (centroids frozen)",
    "dejavid": "DejaVid (full)",
}
# Published DejaVid results (CVPR 2025), top-1 / top-5 in percent; None: not published.
PAPER = {"hmdb51": (88.6, None), "k400": (89.1, 98.2), "ssv2": (77.2, 96.3)}
CACHE_VERSION = 1
LR_SETTINGS = {"standardize": True, "C": 1.0, "max_iter": 1000}
# Upper bound on B * references * K per align call in 1-NN (bounds the int32 paths it returns).
_KNN_BLOCK = 1 << 22


class MissingDependency(ImportError):
    """An optional extra is not installed; the message names the pip command."""


@dataclass
class Result:
    """One row of the comparison: accuracies on the evaluation split and the head's cost."""
    method: str
    top1: float
    top5: float
    count: int                       # evaluation videos
    head_params: int                 # numbers the head adds on top of the encoder
    trained_params: int              # of which fitted by an optimiser
    train_seconds: Optional[float]   # None: unknown (e.g. centroids from an earlier cache)
    eval_seconds: Optional[float]
    notes: str = ""

    @classmethod
    def from_dict(cls, d: dict) -> "Result":
        return cls(**{f.name: d[f.name] for f in fields(cls)})


def topk_counts(dist: torch.Tensor, labels: torch.Tensor, k: int = 5) -> tuple[int, int]:
    """(top-1 hits, top-k hits) ranking classes by ascending ``dist`` [B, C]; ties -> lower class,
    as DejaVid's own evaluation ranks them."""
    return rank_classes(dist, labels, k)[1:]


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


def mean_pool(ds: TSEDataset, progress: bool = False, desc: str = "mean pooling"):
    """Mean over time of every video: (X [N, F] float64, y [N] int64)."""
    X = np.empty((len(ds), ds.index.feature_size), dtype=np.float64)
    y = np.empty(len(ds), dtype=np.int64)
    for n in tqdm(range(len(ds)), desc=desc, unit="video", leave=False, disable=not progress):
        x, y[n], _ = ds[n]
        X[n] = x.double().mean(0).numpy()
    return X, y


def meanpool_lr(train_ds: TSEDataset, eval_ds: TSEDataset, seed: int = 0,
                progress: bool = False) -> Result:
    """Standardised time-averaged features, multinomial logistic regression (L2, C = 1).

    Head: C * F + C parameters (F + 1 for two classes); the standardisation folds into it.
    """
    LogisticRegression, StandardScaler = _sklearn()
    C = train_ds.index.num_classes
    Xtr, ytr = mean_pool(train_ds, progress, "mean pooling (train)")
    Xev, yev = mean_pool(eval_ds, progress, "mean pooling (eval)")
    t0 = time.time()
    scaler = StandardScaler()
    clf = LogisticRegression(C=LR_SETTINGS["C"], max_iter=LR_SETTINGS["max_iter"],
                             random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(scaler.fit_transform(Xtr), ytr)
    train_s = time.time() - t0
    converged = True
    for w in caught:
        if "converge" in str(w.message).lower():
            converged = False
        else:
            warnings.warn(w.message, w.category, stacklevel=2)
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


# --- (2) 1-NN DTW --------------------------------------------------------------------------

def knn_class_distances(train_ds: TSEDataset, eval_ds: TSEDataset, step_pattern: str,
                        backend: str = "auto", batch_size: int = 128, device="cpu",
                        progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-weight DTW from every evaluation video to its nearest training video of each class.

    Returns (dist [N_eval, C], labels [N_eval]).  DTW runs between the raw
    variable-length series (no resampling) with the weighted-L1 local cost and
    step pattern of DESIGN section 3, through :func:`dejavid.align.align` with
    theta = 0: every training video plays the part of a centroid.  ``align``
    wants centroids of one length, so the training videos are grouped by length.
    With this cost both step patterns give DTW(x, y) = DTW(y, x).  Distances are
    not normalised by path length (an 'hv' path has K + T - 1 cells), exactly as
    DejaVid's own distance, so shorter references tend to be nearer.
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
                                 step_pattern, backend=backend)             # [B, n]
                    best.scatter_reduce_(1, labels[s:s + step].expand(B, -1), d, reduce="amin")
            out.append(best.cpu())
            out_labels.append(batch.labels.cpu())
    return torch.cat(out), torch.cat(out_labels)


def knn_dtw(train_ds: TSEDataset, eval_ds: TSEDataset, step_pattern: str, backend: str = "auto",
            batch_size: int = 128, device="cpu", progress: bool = False) -> Result:
    """1-NN DTW; top-5 ranks classes by the distance to their nearest training video."""
    t0 = time.time()
    dist, labels = knn_class_distances(train_ds, eval_ds, step_pattern, backend, batch_size,
                                       device, progress)
    eval_s = time.time() - t0
    top1, top5 = topk_counts(dist, labels)
    N = len(labels)
    notes = (f"no training; stores the {len(train_ds)} training videos; {len(train_ds) * N:,} "
             f"alignments ({step_pattern}) took {_seconds(eval_s)}")
    return Result("knn_dtw", top1 / N, top5 / N, N, 0, 0, 0.0, eval_s, notes)


# --- (3) nearest DBA centroid --------------------------------------------------------------

def dba_centroid(index: DataIndex, cfg: dict, eval_ds: TSEDataset, step_pattern: str, device,
                 progress: bool = False, log: Callable = print) -> Result:
    """The cached DBA centroids with unit weights: DejaVid at initialisation with w = 1."""
    existed = cache_path(cfg["cache_dir"], centroid_meta(index, cfg, step_pattern)).is_file()
    t0 = time.time()
    mu0, path = load_or_compute_centroids(index, cfg, step_pattern, cfg["backend"], progress, log)
    train_s = cached_seconds(path) if existed else time.time() - t0
    model = DejaVid(mu0, step_pattern, fixed_path=False, w_one_init=True,
                    backend=cfg["backend"]).to(device)
    t0 = time.time()
    res = evaluate(model, eval_ds, cfg, device, progress)
    eval_s = time.time() - t0
    C, K, F = mu0.shape
    notes = "DejaVid before training"
    if existed:
        notes += f"; centroids from the cache {path}"
        if train_s is None:
            notes += " (a cache written without its compute time)"
    return Result("dba_centroid", res["top1"], res["top5"], res["count"], C * K * F, 0, train_s,
                  eval_s, notes)


# --- cached results ------------------------------------------------------------------------

def baseline_meta(method: str, index: DataIndex, cfg: dict, step_pattern: str) -> dict:
    """Every input that determines a baseline's result."""
    meta = {"version": CACHE_VERSION, "method": method,
            "train_split": cfg["train_split"], "eval_split": cfg["eval_split"],
            "train_fingerprint": index.fingerprint(cfg["train_split"]),
            "eval_fingerprint": index.fingerprint(cfg["eval_split"])}
    if method == "meanpool_lr":
        meta.update(LR_SETTINGS, seed=cfg["seed"])
    elif method == "knn_dtw":
        meta["step_pattern"] = step_pattern
    elif method == "dba_centroid":
        meta["centroids"] = centroid_meta(index, cfg, step_pattern)
    else:
        raise ValueError(f"unknown baseline {method!r}; baselines: {', '.join(BASELINES)}")
    return meta


def cached_result(path: str | Path, meta: dict, compute: Callable[[], Result],
                  log: Callable = print) -> Result:
    """The result stored at ``path`` if its meta equals ``meta``; otherwise compute and store."""
    path = Path(path)
    if path.is_file():
        try:
            blob = json.loads(path.read_text())
        except json.JSONDecodeError:
            blob = None
        if isinstance(blob, dict) and blob.get("meta") == meta:
            log(f"reusing {meta['method']} result from {path}")
            return Result.from_dict(blob["result"])
        log(f"{path} was computed from other data or settings: recomputing")
    result = compute()
    atomic_write_text(json.dumps({"meta": meta, "result": asdict(result)}, indent=1) + "\n", path)
    return result


def run_baseline(method: str, out_dir: str | Path, index: DataIndex, cfg: dict,
                 train_ds: TSEDataset, eval_ds: TSEDataset, step_pattern: str, device,
                 progress: bool = False, log: Callable = print) -> Result:
    """Cached result of one baseline (``out_dir/<method>.json``), computing it when needed."""
    bs = cfg["eval_batch_size"] or cfg["batch_size"]
    compute = {
        "meanpool_lr": lambda: meanpool_lr(train_ds, eval_ds, cfg["seed"], progress),
        "knn_dtw": lambda: knn_dtw(train_ds, eval_ds, step_pattern, cfg["backend"], bs, device,
                                   progress),
        "dba_centroid": lambda: dba_centroid(index, cfg, eval_ds, step_pattern, device,
                                             progress, log),
    }[method]
    meta = baseline_meta(method, index, cfg, step_pattern)

    def announced():
        log(f"computing {TITLES[method]}")
        return compute()
    return cached_result(Path(out_dir) / f"{method}.json", meta, announced, log)


# --- trained runs --------------------------------------------------------------------------

def trained_result(run_dir: str | Path, method: str, eval_count: int) -> Result:
    """Row of a finished training run: its final epoch (no selection on the evaluation split).

    Read from ``last.pt``, whose history is the source of ``metrics.jsonl``.
    """
    ckpt = load_checkpoint(Path(run_dir) / "last.pt")
    history = ckpt["history"]
    if not history:
        raise ValueError(f"run {run_dir} has no finished epoch")
    last = history[-1]
    best = max(history, key=lambda r: r["val_top1"])
    C, K, F = ckpt["model"]["mu"].shape
    frozen = bool(ckpt["config"]["freeze_centroids"])
    notes = (f"epoch {last['epoch']}; best epoch {best['epoch']}: top-1 "
             f"{100 * best['val_top1']:.2f}")
    return Result(method, last["val_top1"], last["val_top5"], eval_count, 2 * C * K * F,
                  C * K * F if frozen else 2 * C * K * F,
                  float(sum(r["seconds"] for r in history)), None, notes)


# --- the table -----------------------------------------------------------------------------

def _seconds(s: Optional[float]) -> str:
    if s is None:
        return "n/a"
    if s < 60:
        return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


def _share(params: int, encoder_params: Optional[float]) -> str:
    if not encoder_params:
        return "n/a"
    return f"{100 * params / encoder_params:.3g} %"


def format_table(results: dict[str, Result], *, name: str, header: str = "",
                 encoder_params: Optional[float] = None) -> str:
    """Markdown: one row per measured method (in METHODS order) and the paper's row if known."""
    rows = [results[m] for m in METHODS if m in results]
    best = max((r.top1 for r in rows), default=None)
    lines = [f"# DejaVid vs baselines: {name}", ""]
    if header:
        lines += [header, ""]
    lines += ["| method | top-1 (%) | top-5 (%) | head params | trained params | "
              "share of encoder | train time | notes |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        top1 = f"{100 * r.top1:.2f}"
        if r.top1 == best:
            top1 = f"**{top1}**"
        lines.append(f"| {TITLES[r.method]} | {top1} | {100 * r.top5:.2f} | {r.head_params:,} | "
                     f"{r.trained_params:,} | {_share(r.head_params, encoder_params)} | "
                     f"{_seconds(r.train_seconds)} | {r.notes} |")
    paper = PAPER.get(name)
    if paper is not None:
        p1, p5 = ("—" if v is None else f"{v:.1f}" for v in paper)
        lines.append(f"| DejaVid (paper) | {p1} | {p5} | | | | | published (CVPR 2025), "
                     f"not measured here |")
    lines += ["", "top-1/top-5 on the evaluation split; best measured top-1 in bold. DejaVid rows: "
              "final epoch (the best epoch, selected on the evaluation split, is in the notes). "
              "Head params: numbers the method adds on top of the encoder (1-NN adds none but "
              "keeps the training set); trained params: of which fitted by an optimiser. "
              "Share of encoder: head params / --encoder_params. Train time: logistic-regression "
              "fit; DBA centroid computation; DejaVid: sum of epoch times including the "
              "per-epoch evaluation, not counting the centroid initialisation (the DBA row)."]
    gain = _gain_line(results)
    if gain:
        lines += ["", gain]
    return "\n".join(lines) + "\n"


def _gain_line(results: dict[str, Result]) -> str:
    base = [results[m] for m in BASELINES if m in results]
    for m in ("dejavid", "dejavid_frozen"):
        if m in results and base:
            b = max(base, key=lambda r: r.top1)
            diff = 100 * (results[m].top1 - b.top1)
            return (f"{TITLES[m]} vs the best baseline ({TITLES[b.method]}): "
                    f"{diff:+.2f} points top-1.")
    return ""
