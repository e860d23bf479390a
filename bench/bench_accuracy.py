"""DejaVid with one shared config on six public data sets, beside simple and learned baselines.

    python bench/bench_accuracy.py --out bench/accuracy.md            # full run (29 min on 2 shared cores, bench/RESULTS.md)
    python bench/bench_accuracy.py --quick --out /tmp/quick.md         # 2 small sets, 1 seed, CI

The six data sets ship inside aeon's wheel (nothing is downloaded): JapaneseVowels,
ArrowHead, ItalyPowerDemand, OSULeaf, ACSF1, UnitTest, with their official
train/test splits; the test split is the evaluation split, nothing is subsampled.
DejaVid runs with ``configs/default.yaml`` on all six (only the data paths,
C and F differ; C and F come from the data), twice: "DejaVid" with ``--tune none`` (the
same settings everywhere), "DejaVid (tuned)" as the file says (``tune: cv``).  Beside
them, on the same splits:

    1-NN DTW            nearest training series, unit-weight L1 DTW (DejaVid's alignment with
                        the config's step pattern, raw series, no window), as
                        dejavid.baselines.classic.knn_class_distances
    1-NN DTW (diag.)    the same with the diagonal step added (use_mm 1): the classic DTW of
                        the UCR/UEA baselines, stronger than 'hv' on long, spiky series
    1-NN DTW (diag., band)  the same inside a 10 % warping band (KNN_BAND), the classic
                        windowed form
    1-NN DTW (diag., open)  the diagonal-step form with open ends: each test series matched
                        in full to any stretch of each training series (subsequence DTW,
                        docs/DESIGN.md section 3.3.2), the classic form for crops
    DBA centroid        DejaVid's starting point: the DBA class centroids with w = 1 in the
                        space DejaVid trains in (same config, same centroid cache)
    mean pool + LR      time-averaged, standardised features, logistic regression
    1-NN Euclidean      only where every series has the same length (L2 on the raw series)
    BiGRU, attention    dejavid.baselines.temporal_heads, the same settings everywhere

DejaVid (tuned) is train_dejavid's ``tune: cv`` (dejavid.training.tune): the candidates
of TUNE_GRID scored by stratified 3-fold cross-validation inside the training split, the
best trained on the whole split; its time includes the choice.
The full run adds VARLEN_DATASETS: variable-length sets derived by rule from public ones.

DejaVid, BiGRU and the attentive probe depend on the seed: they run once per seed
(``--seeds``, default 0,1,2) and the table shows the mean (per-seed values below it).
The other methods are deterministic.  The DejaVid runs of a data set share one centroid
cache, so only the first computes the DBA centroids: the table times the two kinds of
run apart.  The summary sentence under the tables is computed from the values the table
prints.  The markdown goes to stdout and to ``--out``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dejavid.runtime  # noqa: E402,F401  (before torch and numba, as the entry scripts)
import numpy as np  # noqa: E402
import torch  # noqa: E402

import prepare_demo  # noqa: E402
import train_dejavid  # noqa: E402
from dejavid.baselines.classic import knn_class_distances  # noqa: E402
from dejavid.model.metrics import topk_counts  # noqa: E402
from dejavid.report import rows  # noqa: E402
from dejavid.training.checkpoint import load_checkpoint  # noqa: E402
from dejavid.config.files import load_config  # noqa: E402
from dejavid.data.dataset import TSEDataset  # noqa: E402
from dejavid.config.settings import index_from_config, settings_from_config  # noqa: E402
from dejavid.io import atomic_write_text  # noqa: E402
from dejavid.baselines.temporal_heads import AttentiveProbeClassifier, GRUClassifier  # noqa: E402

DATASETS = ("JapaneseVowels", "ArrowHead", "ItalyPowerDemand", "OSULeaf", "ACSF1", "UnitTest")
QUICK_DATASETS = ("UnitTest", "ItalyPowerDemand")
CONFIG = ROOT / "configs" / "default.yaml"
# --quick: just enough training to run every code path.
SMOKE_NOTE = ("**Smoke run (--quick)**: a few epochs, DBA iterations and head updates, to check "
              "that every code path runs; these figures are not accuracies (a learned head "
              "may sit below chance). Run without --quick to measure.")
QUICK_DEJAVID = ["--num_epochs", "3", "--dba_max_iter", "5"]
QUICK_HEAD_STEPS = 6

METHODS = ("knn_dtw", "knn_dtw_diag", "knn_dtw_band", "knn_dtw_open", "dba_centroid",
           "meanpool_lr", "knn_euclid", "gru", "attention", "dejavid", "dejavid_tuned")
# The band of the column "1-NN DTW (band)": diagonal step inside a 10 % Sakoe-Chiba window,
# the classic UCR form (dejavid.alignment.backend.band_rows).
KNN_BAND = 0.1
TITLES = {"knn_dtw": "1-NN DTW", "knn_dtw_diag": "1-NN DTW (diag.)",
          "knn_dtw_band": "1-NN DTW (diag., band)", "knn_dtw_open": "1-NN DTW (diag., open)",
          "dba_centroid": "DBA centroid",
          "meanpool_lr": "mean pool + LR",
          "knn_euclid": "1-NN Eucl.", "gru": "BiGRU", "attention": "attn. probe",
          "dejavid": "DejaVid", "dejavid_tuned": "DejaVid (tuned)"}


# --- data ----------------------------------------------------------------------------------

def load_dataset(name: str):
    """(train series, train labels, test series, test labels); series are [T, F] float32.
    A name '<set>-crop' or '<set>-tile' (VARLEN_DATASETS, and any other public set) is the
    public set with every series changed by that rule (:func:`vary_lengths`)."""
    base, _, rule = name.partition("-")
    Xtr, ytr = prepare_demo.load_split(base, "train")
    Xte, yte = prepare_demo.load_split(base, "test")
    if rule:
        Xtr, Xte = vary_lengths(Xtr, rule, seed=0), vary_lengths(Xte, rule, seed=1)
    return Xtr, np.array(ytr), Xte, np.array(yte)


# Variable-length cases derived by rule from public equal-length sets (labels kept):
#   crop  each series cut to a window of a random 20-100 % of its length at a random start
#         (one event seen for longer or shorter: the part of a recording a user has);
#   tile  each series repeated 1-4 times end to end (a periodic signal recorded for a
#         varying time: resampling to K steps changes its period).
# Seeded (train with seed 0, test with seed 1), so every run sees the same series.
VARLEN_DATASETS = {"ArrowHead-crop": ("ArrowHead", "crop"),
                   "ItalyPowerDemand-tile": ("ItalyPowerDemand", "tile"),
                   "UnitTest-tile": ("UnitTest", "tile")}


def vary_lengths(X: list, rule: str, seed: int) -> list:
    """The series of X [T, F] under ``rule`` ('crop' or 'tile', see VARLEN_DATASETS)."""
    rng = np.random.default_rng(seed)
    out = []
    for x in X:
        T = x.shape[0]
        if rule == "crop":
            n = max(2, int(round(T * rng.uniform(0.2, 1.0))))
            start = int(rng.integers(0, T - n + 1))
            out.append(np.ascontiguousarray(x[start:start + n]))
        elif rule == "tile":
            out.append(np.ascontiguousarray(np.tile(x, (int(rng.integers(1, 5)), 1))))
        else:
            raise ValueError(f"unknown length rule {rule!r}; use crop or tile")
    return out


def write_on_disk(folder: Path, Xtr, ytr, Xte, yte) -> list[str]:
    """The data set in DejaVid's on-disk format (one dict file per split); returns the
    config overrides that point at it (splits 'train' and 'test', evaluated on 'test')."""
    import pickle

    from dejavid.io import atomic_torch_save
    splits, labels, fnames = {}, {}, {}
    for split, X, y in (("train", Xtr, ytr), ("test", Xte, yte)):
        blob = {}
        for n, (x, lab) in enumerate(zip(X, y)):
            vid = f"{split}_{n:05d}"
            splits[vid], labels[vid], fnames[vid] = split, int(lab), f"{split}.pt"
            blob[vid] = torch.from_numpy(x)
        atomic_torch_save(blob, folder / f"{split}.pt")
    for name, m in (("id2splits", splits), ("id2labels", labels), ("id2fname", fnames)):
        with open(folder / f"{name}.pkl", "wb") as fh:
            pickle.dump(m, fh)
    return ["--id2feats", str(folder), "--id2splits", str(folder / "id2splits.pkl"),
            "--id2labels", str(folder / "id2labels.pkl"),
            "--id2fname", str(folder / "id2fname.pkl"),
            "--eval_split", "test"]


# --- DejaVid -------------------------------------------------------------------------------

def run_dejavid(data_args: list[str], work: Path, seed: int, extra: list[str],
                run_name: str = "") -> dict:
    """Train DejaVid with CONFIG on the data set written by :func:`write_on_disk` and return
    {"top1", "seconds", "K", "train_loss", "computed_centroids"} of its final epoch;
    ``computed_centroids`` says whether this run computed the DBA centroids (a new file in
    the centroid cache) or loaded those of an earlier run.

    The one place that drives DejaVid: it runs train_dejavid's normal training in a
    run folder under ``work``.  Swap it for ``dejavid.DejaVidClassifier(...).fit(X, y)``
    once that estimator exists.
    """
    run = run_name or f"seed{seed}"
    argv = ["--config", str(CONFIG), *data_args, "--seed", str(seed),
            "--cache_dir", str(work / "cache"), "--output_dir", str(work / "runs"),
            "--run_name", run, "--no-progress", "--tune", "none", *extra]
    cached = set((work / "cache").glob("centroids_*.pt"))
    t0 = time.time()
    with contextlib.redirect_stdout(sys.stderr):  # its log, not the report
        rc = train_dejavid.main(argv)
    seconds = time.time() - t0
    computed = bool(set((work / "cache").glob("centroids_*.pt")) - cached)
    if rc != 0:
        raise RuntimeError(f"train_dejavid exited with {rc} ({' '.join(argv)})")
    ckpt = load_checkpoint(work / "runs" / run)
    hist = ckpt["history"]
    return {"top1": hist[-1]["val_top1"], "seconds": seconds,
            "K": ckpt["config"]["num_timesteps"],
            "train_loss": [round(r["train_loss"], 4) for r in hist],
            "computed_centroids": computed}


# --- DejaVid (tuned): tune: cv, settings chosen by cross-validation inside the training split ---

def run_dejavid_tuned(data_args: list[str], work: Path, seed: int, extra: list[str],
                      quick: bool = False) -> dict:
    """train_dejavid with ``--tune cv`` (dejavid.training.tune: the grid TUNE_GRID, stratified
    3-fold cross-validation inside the training split, then one fit of the choice on the
    whole split, evaluated on the evaluation split): run_dejavid's result plus "chosen"
    and "cv" (the run's tune.json).  ``seconds`` covers the choice and the fit.
    ``quick``: two folds (every code path, a fraction of the cost)."""
    run = f"seed{seed}-tuned"
    r = run_dejavid(data_args, work, seed, [*extra, "--tune", "cv",
                                            *(["--tune_folds", "2"] if quick else [])],
                    run_name=run)
    record = json.loads((work / "runs" / run / train_dejavid.TUNE_FILE).read_text())
    return {**r, "chosen": record["chosen"], "cv": record}


# --- baselines (adapters over dejavid.report.rows and dejavid.baselines.classic) ---

def baseline_index(data_args: list[str], work: Path, extra: list[str]):
    """(index, cfg) of the written data set under CONFIG and the overrides ``extra``, as
    DejaVid's training sees it (auto values resolved, standardisation statistics attached)."""
    cfg = load_config(CONFIG, [*data_args, "--cache_dir", str(work / "cache"), *extra])
    return index_from_config(cfg, progress=False), cfg


def knn_dtw(index, cfg) -> float:
    """1-NN DTW, unit weights, on the raw series (in the config's warping band, if any; with
    open ends if the config says so)."""
    train = TSEDataset(index, cfg["train_split"], in_memory=True, progress=False)
    test = TSEDataset(index, cfg["eval_split"], in_memory=True, progress=False)
    model = settings_from_config(cfg).model
    dist, labels = knn_class_distances(train, test, model.step_pattern, cfg["backend"],
                                       band=model.band, open_ends=model.open_ends)
    return topk_counts(dist, labels)[0] / len(labels)


def dba_centroid(index, cfg) -> float:
    """Nearest DBA centroid with w = 1, in DejaVid's feature space (shares its centroid cache)."""
    train = TSEDataset(index, cfg["train_split"], in_memory=True, progress=False)
    test = TSEDataset(index, cfg["eval_split"], in_memory=True, progress=False)
    return rows.dba_centroid(train, test, settings_from_config(cfg).centroids,
                                  cfg["cache_dir"], device=torch.device("cpu"),
                                  log=lambda *a: None).top1


def meanpool_lr(index, cfg) -> float:
    train = TSEDataset(index, cfg["train_split"], in_memory=True, progress=False)
    test = TSEDataset(index, cfg["eval_split"], in_memory=True, progress=False)
    return rows.meanpool_lr(train, test).top1


def knn_euclid(Xtr, ytr, Xte, yte):
    """1-NN with the Euclidean distance between whole series; None if lengths differ."""
    if len({x.shape for x in [*Xtr, *Xte]}) != 1:
        return None
    A = torch.from_numpy(np.stack(Xtr).reshape(len(Xtr), -1)).double()
    B = torch.from_numpy(np.stack(Xte).reshape(len(Xte), -1)).double()
    nearest = torch.cdist(B, A).argmin(1).numpy()
    return float((ytr[nearest] == yte).mean())


def temporal_head(cls, Xtr, ytr, Xte, yte, seed: int, quick: bool) -> tuple[float, float]:
    """(test accuracy, fit seconds) of a dejavid.baselines.temporal_heads estimator (its default
    settings; a few updates with ``quick``)."""
    t0 = time.time()
    clf = cls(seed=seed, **({"steps": QUICK_HEAD_STEPS} if quick else {})).fit(Xtr, ytr)
    seconds = time.time() - t0
    return float(clf.score(Xte, yte)), seconds


# --- the benchmark -------------------------------------------------------------------------

def bench_dataset(name: str, seeds: list[int], work: Path, quick: bool, log,
                  methods=METHODS, dejavid_args: tuple = ()) -> dict:
    """``methods`` on one data set: {"info", "top1": method -> per-seed top-1 (or one value),
    "seconds": method -> all its runs, "dejavid_runs": [(seconds, computed the centroids)]
    per seed}.  ``dejavid_args`` are extra train_dejavid overrides (for ablations); the DBA
    centroid row then shows the start of that variant."""
    Xtr, ytr, Xte, yte = load_dataset(name)
    (work / "data").mkdir(parents=True, exist_ok=True)
    data_args = write_on_disk(work / "data", Xtr, ytr, Xte, yte)
    extra = [*(QUICK_DEJAVID if quick else []), *dejavid_args]
    res: dict = {m: [] for m in METHODS}
    secs: dict = {m: 0.0 for m in METHODS}
    dejavid_runs = []
    for seed in seeds if "dejavid" in methods else []:
        r = run_dejavid(data_args, work, seed, extra)
        res["dejavid"].append(r["top1"])
        secs["dejavid"] += r["seconds"]
        dejavid_runs.append((r["seconds"], r["computed_centroids"]))
        how = "computed" if r["computed_centroids"] else "cached"
        log(f"{name}: DejaVid seed {seed}: top-1 {r['top1']:.4f} "
            f"({r['seconds']:.1f} s, centroids {how}; train loss per epoch {r['train_loss']})")
    chosen = []
    for seed in seeds if "dejavid_tuned" in methods else []:
        r = run_dejavid_tuned(data_args, work, seed, extra, quick)
        res["dejavid_tuned"].append(r["top1"])
        secs["dejavid_tuned"] += r["seconds"]
        chosen.append(r["chosen"])
        log(f"{name}: DejaVid (tuned) seed {seed}: top-1 {r['top1']:.4f} with "
            f"{chosen[-1]} ({r['seconds']:.1f} s with the choice); cv mean log-loss / top-1 "
            "per candidate: " + "; ".join(f"{c['changes']} {c['mean_log_loss']:.4f} / "
                                          f"{c['mean_top1']:.4f}"
                                          for c in r["cv"]["candidates"]))
    index, cfg = baseline_index(data_args, work, extra)   # resolves K as DejaVid's runs did
    if "dba_centroid" in methods:
        t0 = time.time()
        res["dba_centroid"].append(dba_centroid(index, cfg))
        secs["dba_centroid"] = time.time() - t0
    raw = baseline_index(data_args, work, [*extra, "--standardize", "false"])
    diag = baseline_index(data_args, work, [*extra, "--standardize", "false", "--use_mm", "1"])
    banded = baseline_index(data_args, work, [*extra, "--standardize", "false", "--use_mm", "1",
                                              "--band", str(KNN_BAND)])
    opened = baseline_index(data_args, work, [*extra, "--standardize", "false", "--use_mm", "1",
                                              "--open_ends", "true"])
    for m, fn, (idx, c) in (("knn_dtw", knn_dtw, raw), ("knn_dtw_diag", knn_dtw, diag),
                            ("knn_dtw_band", knn_dtw, banded), ("knn_dtw_open", knn_dtw, opened),
                            ("meanpool_lr", meanpool_lr, raw)):
        if m in methods:
            t0 = time.time()
            res[m].append(fn(idx, c))
            secs[m] = time.time() - t0
    e = knn_euclid(Xtr, ytr, Xte, yte) if "knn_euclid" in methods else None
    if e is not None:
        res["knn_euclid"].append(e)
    for m, cls in (("gru", GRUClassifier), ("attention", AttentiveProbeClassifier)):
        for seed in seeds if m in methods else []:
            acc, s = temporal_head(cls, Xtr, ytr, Xte, yte, seed, quick)
            res[m].append(acc)
            secs[m] += s
    lengths = [x.shape[0] for x in Xtr]
    info = {"C": len(np.unique(ytr)), "F": Xtr[0].shape[1], "train": len(Xtr), "test": len(Xte),
            "T": (min(lengths), max(lengths)), "K": cfg["num_timesteps"], "chosen": chosen}
    log(f"{name}: " + ", ".join(f"{TITLES[m]} {np.mean(v):.4f}" for m, v in res.items() if v)
        + " | seconds: " + ", ".join(f"{TITLES[m]} {s:.1f}" for m, s in secs.items()))
    return {"info": info, "top1": res, "seconds": secs, "dejavid_runs": dejavid_runs}


def shown_top1(results: dict) -> dict:
    """{data set: {method: top-1 in % as the table prints it (mean over seeds, 2 decimals),
    or None}}.  The table, its bold cells and the summary sentence all read these values,
    so the sentence never rests on a difference the table does not show."""
    return {name: {m: round(100 * float(np.mean(v)), 2) if v else None
                   for m, v in r["top1"].items()}
            for name, r in results.items()}


def _cell(value, best: float) -> str:
    if value is None:
        return "n/a"
    return f"**{value:.2f}**" if value == best else f"{value:.2f}"


def _run_times(runs: list) -> str:
    """'computed / cached': mean seconds of the DejaVid runs that computed the DBA
    centroids and of those that loaded them from the cache ('-' where there were none)."""
    def mean(computed):
        s = [sec for sec, c in runs if c == computed]
        return f"{np.mean(s):.1f}" if s else "-"
    return f"{mean(True)} / {mean(False)}"


def format_report(results: dict, seeds: list[int], command: str, total_s: float) -> str:
    """Markdown: the top-1 table (means over seeds), per-seed values, times."""
    lines = [f"Command: `{command}`; seeds {', '.join(map(str, seeds))}; "
             f"total {total_s / 60:.1f} min.",
             "",
             "| data set | C | F | T | train/test | K | " + " | ".join(TITLES[m] for m in METHODS)
             + " | DejaVid s/run (centroids computed / cached) |",
             "| --- | ---: | ---: | --- | --- | ---: | " + " | ".join("---:" for _ in METHODS)
             + " | ---: |"]
    shown = shown_top1(results)
    for name, r in results.items():
        i = r["info"]
        best = max(v for v in shown[name].values() if v is not None)
        T = f"{i['T'][0]}" if i["T"][0] == i["T"][1] else f"{i['T'][0]}-{i['T'][1]}"
        lines.append(f"| {name} | {i['C']} | {i['F']} | {T} | {i['train']}/{i['test']} | "
                     f"{i['K']} | " + " | ".join(_cell(shown[name][m], best) for m in METHODS)
                     + f" | {_run_times(r['dejavid_runs'])} |")
    lines += ["", "Top-1 (%) on the official test split; best per data set in bold. DejaVid, "
              "BiGRU and attn. probe: mean over the seeds (per seed below); the others are "
              "deterministic. DejaVid s/run: wall time of one train_dejavid run, mean over the "
              "runs that computed the DBA centroids (centroids, training, per-epoch "
              "evaluation: the first seed, unless --work held the centroids already) / over "
              "those that loaded them from the cache (training, per-epoch evaluation: the "
              "later seeds); on a shared machine (noisy).", ""]
    per_seed = ("dejavid", "dejavid_tuned", "gru", "attention")
    lines += ["| data set | " + " | ".join(f"{TITLES[m]} per seed" for m in per_seed)
              + " | tuned: chosen per seed | seconds (DejaVid / tuned, choice included / BiGRU / "
                "attn. / 1-NN DTW / diag. / band / open, all seeds) |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        per = [" / ".join(f"{100 * v:.2f}" for v in r["top1"][m]) or "n/a"
               for m in per_seed]
        s = r["seconds"]
        chosen = " / ".join(f"`{c}`" for c in r["info"].get("chosen", [])) or "n/a"
        lines.append(f"| {name} | " + " | ".join(per) + f" | {chosen} | {s['dejavid']:.0f} / "
                     f"{s['dejavid_tuned']:.0f} / {s['gru']:.0f} / {s['attention']:.0f} / "
                     f"{s['knn_dtw']:.0f} / {s['knn_dtw_diag']:.0f} / {s['knn_dtw_band']:.0f} / "
                     f"{s['knn_dtw_open']:.0f} |")
    return "\n".join(lines + ["", summary(shown)]) + "\n"


def summary(shown: dict) -> str:
    """How DejaVid stands against its start and against the simple baselines, from the
    top-1 values the table shows (:func:`shown_top1`: {data set: {method: % or None}})."""
    above_start, above_simple, above_diag, heads_better = [], [], [], []
    if any(t[m] is None for t in shown.values() for m in METHODS if m != "knn_euclid"):
        return "(summary needs every method)"
    for name, t in shown.items():
        d = t["dejavid"]
        if d >= t["dba_centroid"]:
            above_start.append(name)
        if d >= max(t[m] for m in ("knn_dtw", "dba_centroid", "meanpool_lr")):
            above_simple.append(name)
        if d >= t["knn_dtw_diag"]:
            above_diag.append(name)
        for m in ("gru", "attention"):
            if t[m] > d:
                heads_better.append(f"{TITLES[m]} on {name}")
    n = len(shown)
    tuned_all, tuned_diag = [], []
    for name, t in shown.items():
        tuned = t["dejavid_tuned"]
        if all(tuned >= v for m, v in t.items() if v is not None and m != "dejavid_tuned"):
            tuned_all.append(name)
        if tuned >= t["knn_dtw_diag"]:
            tuned_diag.append(name)
    return (f"DejaVid >= its DBA-centroid start on {len(above_start)}/{n} "
            f"({', '.join(above_start) or 'none'}); >= the best of 1-NN DTW, DBA centroid and "
            f"mean pool + LR on {len(above_simple)}/{n} ({', '.join(above_simple) or 'none'}); "
            f">= 1-NN DTW with diagonal steps on {len(above_diag)}/{n} "
            f"({', '.join(above_diag) or 'none'}). "
            f"Learned temporal heads above DejaVid: {', '.join(heads_better) or 'none'}. "
            f"DejaVid (tuned) >= every other column on {len(tuned_all)}/{n} "
            f"({', '.join(tuned_all) or 'none'}); >= 1-NN DTW with diagonal steps on "
            f"{len(tuned_diag)}/{n} ({', '.join(tuned_diag) or 'none'}).")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="also write the markdown report to this file")
    ap.add_argument("--quick", action="store_true",
                    help=f"{' and '.join(QUICK_DATASETS)} only, one seed, a few epochs (CI)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    ap.add_argument("--datasets", help=f"comma-separated subset of {', '.join(DATASETS)}")
    ap.add_argument("--work", help="keep data, centroids and runs here (default: a temp folder)")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma-separated subset of {', '.join(METHODS)} (default all)")
    ap.add_argument("--dejavid-args", default="",
                    help="extra train_dejavid overrides for ablations, e.g. "
                         "'--logit_head zscore' (not for the reported table)")
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or any(m not in METHODS for m in methods):
        raise ValueError(f"--methods: choose from {', '.join(METHODS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    names = (args.datasets.split(",") if args.datasets
             else list(QUICK_DATASETS if args.quick else (*DATASETS, *VARLEN_DATASETS)))
    known = (*DATASETS, *VARLEN_DATASETS)
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"unknown data set(s) {', '.join(bad)}; choose from {', '.join(known)}")
    if args.quick:
        seeds = seeds[:1]
    command = "python bench/bench_accuracy.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.time()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_accuracy-") as tmp:
        base = Path(args.work) if args.work else Path(tmp)
        for name in names:
            results[name] = bench_dataset(name, seeds, base / name, args.quick, log, methods,
                                          tuple(args.dejavid_args.split()))
    report = format_report(results, seeds, command.strip(), time.time() - t0)
    if args.quick:
        report = SMOKE_NOTE + "\n\n" + report
    print(report)
    if args.out:
        atomic_write_text(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
