"""The comparison table of reproduce.py: its rows, their cache files, trained runs read
back, and the markdown table.

Rows, in the order of the paper's table (DejaVid, CVPR 2025), then our extra baselines:

    encoder_logits     the encoder alone: its class logits averaged over the clips
                       (only when the config's ``logit_columns`` says the features hold them)
    meanpool_lr        mean over time + logistic regression: the closest we have to the
                       paper's "temporal oversampling, averaged" (not the same method)
    dejavid_centroids  DejaVid, centroids only (weights frozen: ``freeze_weights``)
    dejavid_weights    DejaVid, weights only (centroids frozen: ``freeze_centroids``)
    dejavid            DejaVid, centroids and weights learned
    knn_dtw            1-nearest-neighbour DTW with unit weights
    dba_centroid       nearest DBA centroid with unit weights (DejaVid before training)

A row is one :class:`Row` entry of :data:`ROWS`.  Kinds: ``estimator`` (an object with
``fit(X, y)`` and ``decision_function(X)`` built from the config by ``factory``; computed
by :func:`dejavid.report.rows.estimator_row`), ``baseline`` (a function of
:mod:`dejavid.report.rows`), ``dejavid`` (a training run with ``overrides``, trained by
:func:`dejavid.fit` and read back by :func:`trained_result`).  Adding an estimator row is
one entry: ``Row("gru", "bidirectional GRU", "estimator", factory=make_gru)``.

Each baseline or estimator result is cached as a small JSON file whose ``meta`` records
every input that determines it; a cached result is reused only when its meta matches.
The paper's configs (config ``name`` hmdb51, k400 or ssv2) get the published numbers
beside each row (:data:`PUBLISHED`).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Optional

from ..training.checkpoint import load_checkpoint
from ..baselines.encoder import encoder_logits_for
from ..io import atomic_write_text


@dataclass(frozen=True)
class Row:
    """One row of the table.

    method    key: ``--methods`` name, cache file / run folder name
    title     the row's name in the table
    kind      'estimator' | 'baseline' | 'dejavid'
    paper     the key of the paper's row it stands beside in :data:`PUBLISHED` (None: not
              a row of the paper)
    factory   estimator rows: ``factory(cfg, num_classes, feature_size)`` -> an unfitted
              estimator, or None when the row does not apply to this config (it is skipped)
    time_mean estimator rows whose decision reads only each video's mean over time: they
              are fed that mean as a one-step series (the same decision up to float
              rounding; N x F numbers in memory instead of the whole split)
    params    estimator rows: ``params(fitted) -> (head params, trained params)``; default:
              the estimator's ``head_params_`` and ``trained_params_`` attributes
    overrides dejavid rows: config keys set for the run
    """
    method: str
    title: str
    kind: str
    paper: Optional[str] = None
    factory: Optional[Callable[[dict, int, int], Any]] = None
    time_mean: bool = False
    params: Optional[Callable[[Any], tuple[int, int]]] = None
    overrides: tuple = ()

    def __post_init__(self):
        if self.kind not in ("estimator", "baseline", "dejavid"):
            raise ValueError(f"row {self.method}: kind must be estimator, baseline or dejavid")
        if (self.kind == "estimator") != (self.factory is not None):
            raise ValueError(f"row {self.method}: estimator rows (and only they) need a factory")


def _temporal_head(name: str, cfg: dict):
    from ..baselines import temporal_heads   # imports scikit-learn: only when asked for
    return getattr(temporal_heads, name)(seed=cfg["seed"])


ROWS: tuple[Row, ...] = (
    # The encoder's own head is part of the encoder's parameter count: it adds nothing.
    Row("encoder_logits", "encoder, clip-averaged logits", "estimator", paper="encoder",
        factory=encoder_logits_for, time_mean=True, params=lambda est: (0, 0)),
    Row("meanpool_lr", "mean pooling + logistic regression", "baseline", paper="averaged"),
    Row("dejavid_centroids", "DejaVid, centroids only (weights frozen)", "dejavid",
        paper="centroids", overrides=(("freeze_centroids", False), ("freeze_weights", True))),
    Row("dejavid_weights", "DejaVid, weights only (centroids frozen)", "dejavid",
        paper="weights", overrides=(("freeze_centroids", True), ("freeze_weights", False))),
    Row("dejavid", "DejaVid, full", "dejavid", paper="full",
        overrides=(("freeze_centroids", False), ("freeze_weights", False))),
    Row("knn_dtw", "1-NN DTW, unit weights", "baseline"),
    Row("dba_centroid", "nearest DBA centroid, unit weights", "baseline"),
    # Learned temporal heads a user of frozen features would pick instead (issue #14); the
    # paper compares with none.  Their default settings, seeded with the config's seed.
    Row("gru", "bidirectional GRU, masked mean pooling", "estimator",
        factory=lambda cfg, C, F: _temporal_head("GRUClassifier", cfg)),
    Row("attention", "attentive probe (learned query, positions)", "estimator",
        factory=lambda cfg, C, F: _temporal_head("AttentiveProbeClassifier", cfg)),
)
ROW = {r.method: r for r in ROWS}
METHODS = tuple(ROW)
BASELINES = tuple(r.method for r in ROWS if r.kind == "baseline")
TRAINED = tuple(r.method for r in ROWS if r.kind == "dejavid")
TITLES = {r.method: r.title for r in ROWS}

# Published top-1 / top-5 (percent) of DejaVid (CVPR 2025) with VideoMAE V2-g features, per
# config name and paper row; None: not published (top-5 only for the best row of K400/SSv2).
PUBLISHED = {
    "k400": {"encoder": (88.4, None), "averaged": (88.1, None), "centroids": (89.1, 98.2),
             "weights": (88.4, None), "full": (88.9, None)},
    "ssv2": {"encoder": (76.7, None), "averaged": (76.2, None), "centroids": (77.1, None),
             "weights": (77.0, None), "full": (77.2, 96.3)},
    "hmdb51": {"encoder": (88.1, None), "averaged": (88.0, None), "centroids": (88.3, None),
               "weights": (88.5, None), "full": (88.6, None)},
}
PAPER_ROW_NAMES = {"encoder": "VideoMAE V2-g, clip-averaged", "averaged":
                   "temporal oversampling, averaged", "centroids": "DejaVid, centroids only",
                   "weights": "DejaVid, weights only", "full": "DejaVid, full"}
# The encoder of the paper's features (VideoMAE V2-g): the default of --encoder_params there.
PAPER_ENCODER_PARAMS = 1013e6


def paper_numbers(name: str) -> Optional[dict]:
    """The published numbers of a paper config (by its ``name``), or None."""
    return PUBLISHED.get(name)


def default_encoder_params(name: str) -> Optional[float]:
    """The encoder's parameter count the share column uses when --encoder_params is not given."""
    return PAPER_ENCODER_PARAMS if name in PUBLISHED else None


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



def trained_result(run_dir: str | Path, method: str, eval_count: int) -> Result:
    """Row of a finished training run: its final epoch (no selection on the evaluation split).

    Read from the run's latest checkpoint (``last.pt``, or ``best.pt`` when a crash came
    between the two writes), whose history is the source of ``metrics.jsonl``.
    """
    ckpt = load_checkpoint(Path(run_dir))
    history = ckpt["history"]
    if not history:
        raise ValueError(f"run {run_dir} has no finished epoch")
    last = history[-1]
    best = max(history, key=lambda r: r["val_top1"])
    C, K, F = ckpt["model"]["mu"].shape
    cfg = ckpt["config"]
    # Only the unfrozen part (mu or theta, C * K * F numbers each) is fitted.
    trained = C * K * F * (2 - bool(cfg.get("freeze_centroids")) - bool(cfg.get("freeze_weights")))
    notes = (f"epoch {last['epoch']}; best epoch {best['epoch']}: top-1 "
             f"{100 * best['val_top1']:.2f}")
    return Result(method, last["val_top1"], last["val_top5"], eval_count, 2 * C * K * F, trained,
                  float(sum(r["seconds"] for r in history)), None, notes)


def format_seconds(s: Optional[float]) -> str:
    """A duration for the table: '0.19 s', '12.3 s', '2 min 5 s', '1 h 3 min'; n/a for None."""
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
    share = 100 * params / encoder_params
    if share == 0:
        return "0 %"
    # Three significant digits, never in exponent notation (0.118 %, 0.0000118 %).
    return f"{share:.{max(0, 2 - math.floor(math.log10(share)))}f} %"


def _published(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.1f}"


def format_table(results: dict[str, Result], *, name: str, header: str = "",
                 encoder_params: Optional[float] = None) -> str:
    """Markdown: one line per measured row, in :data:`ROWS` order.

    For a paper config (``name`` in :data:`PUBLISHED`) the published top-1 / top-5 of the
    corresponding row of the paper stand beside the measured ones.  The share of the
    encoder is trained params / ``encoder_params`` (n/a without it)."""
    rows = [results[m] for m in METHODS if m in results]
    best = max((r.top1 for r in rows), default=None)
    paper = paper_numbers(name)
    lines = [f"# DejaVid vs baselines: {name}", ""]
    if header:
        lines += [header, ""]
    cols = ["method", "top-1 (%)", "top-5 (%)"]
    if paper is not None:
        cols = ["method", "top-1 (%)", "paper top-1", "top-5 (%)", "paper top-5"]
    cols += ["head params", "trained params", "share of encoder", "train time", "notes"]
    lines += ["| " + " | ".join(cols) + " |",
              "| --- | " + "---: | " * (len(cols) - 2) + "--- |"]
    for r in rows:
        top1 = f"{100 * r.top1:.2f}"
        if r.top1 == best:
            top1 = f"**{top1}**"
        cells = [TITLES[r.method], top1, f"{100 * r.top5:.2f}"]
        if paper is not None:
            key = ROW[r.method].paper
            p1, p5 = paper[key] if key else (None, None)
            mark = " †" if key == "averaged" else ""
            cells[2:2] = [_published(p1) + mark]
            cells.append(_published(p5))
        cells += [f"{r.head_params:,}", f"{r.trained_params:,}",
                  _share(r.trained_params, encoder_params), format_seconds(r.train_seconds),
                  r.notes]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "top-1/top-5 on the evaluation split; best measured top-1 in bold. DejaVid rows: "
              "final epoch (the best epoch, selected on the evaluation split, is in the notes). "
              "Head params: numbers the method adds on top of the encoder (the encoder's own "
              "logits and 1-NN add none; 1-NN keeps the training set); trained params: of which "
              "fitted by an optimiser. Share of encoder: trained params / the encoder's "
              f"parameters ({_encoder_text(encoder_params)}). Train time: logistic-regression "
              "fit; DBA centroid computation; DejaVid: sum of epoch times including the "
              "per-epoch evaluation, not counting the centroid initialisation (the DBA row)."]
    if paper is not None:
        lines += ["", f"Paper columns: published top-1 / top-5 of DejaVid (CVPR 2025) on "
                  f"{name} with VideoMAE V2-g features, beside the row they correspond to "
                  "(— : not published; the paper gives top-5 for its best row only); "
                  f"not measured here. † The paper's row '{PAPER_ROW_NAMES['averaged']}' "
                  "(more clips per video, averaged, no DejaVid) is not this method; mean "
                  "pooling + logistic regression on the features is the closest we have."]
    gain = _gain_line(results)
    if gain:
        lines += ["", gain]
    return "\n".join(lines) + "\n"


def _encoder_text(encoder_params: Optional[float]) -> str:
    if not encoder_params:
        return "not given: --encoder_params"
    return f"{encoder_params:,.0f}"


def _gain_line(results: dict[str, Result]) -> str:
    base = [results[m] for m in METHODS if m in results and ROW[m].kind != "dejavid"]
    for m in ("dejavid", "dejavid_weights", "dejavid_centroids"):
        if m in results and base:
            b = max(base, key=lambda r: r.top1)
            diff = 100 * (results[m].top1 - b.top1)
            return (f"{TITLES[m]} vs the best other row ({TITLES[b.method]}): "
                    f"{diff:+.2f} points top-1.")
    return ""
