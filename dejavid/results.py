"""The comparison table of reproduce.py: result rows, their cache files, trained runs read
back, and the markdown table.

    meanpool_lr     mean over time + logistic regression (scikit-learn)
    knn_dtw         1-nearest-neighbour DTW with unit weights: every training video is a reference
    dba_centroid    nearest DBA centroid with unit weights (DejaVid before training)
    dejavid_frozen  DejaVid, learned weights only (centroids frozen)   } trained by dejavid.fit;
    dejavid         DejaVid, centroids and weights learned              } read back by trained_result

Each baseline result is cached as a small JSON file whose ``meta`` records every
input that determines it; a cached result is reused only when its meta matches exactly.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Optional

from .checkpoint import load_checkpoint
from .io import atomic_write_text

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

    Read from ``last.pt``, whose history is the source of ``metrics.jsonl``.
    """
    ckpt = load_checkpoint(Path(run_dir) / "last.pt")
    history = ckpt["history"]
    if not history:
        raise ValueError(f"run {run_dir} has no finished epoch")
    last = history[-1]
    best = max(history, key=lambda r: r["val_top1"])
    C, K, F = ckpt["model"]["mu"].shape
    frozen = bool(ckpt["config"]["freeze_centroids"] or ckpt["config"].get("freeze_weights"))
    notes = (f"epoch {last['epoch']}; best epoch {best['epoch']}: top-1 "
             f"{100 * best['val_top1']:.2f}")
    return Result(method, last["val_top1"], last["val_top5"], eval_count, 2 * C * K * F,
                  C * K * F if frozen else 2 * C * K * F,
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
                     f"{format_seconds(r.train_seconds)} | {r.notes} |")
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
