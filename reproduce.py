"""Baselines beside DejaVid on one dataset: one results table (the paper's rows) and plots.

    python reproduce.py --config configs/japanese_vowels.yaml [--key value ...]
    python reproduce.py --config configs/hmdb51.yaml --methods encoder_logits,meanpool_lr,dejavid

Rows (``--methods``, default all that apply), in the paper's order, then our extra
baselines: encoder_logits (only with ``logit_columns``), meanpool_lr,
dejavid_centroids, dejavid_weights, dejavid, knn_dtw, dba_centroid (see
:mod:`dejavid.report.table`).  For the paper's configs (``name`` hmdb51, k400, ssv2) the
published numbers stand beside the measured ones and ``--encoder_params`` defaults to
VideoMAE V2-g's 1013e6.  Everything lives in the reproduce folder (``--out``, default
``<output_dir>/reproduce-<name>``): baseline and estimator results as JSON under
``baselines/``, one training run folder per DejaVid row (as train_dejavid.py writes
them, trained by :func:`dejavid.fit`), then ``results.md``, ``results.json`` and the
PNG plots.  A second call reuses every finished result and resumes a partly trained run.
With DEJAVID_TIMING=1, ``timing.json`` (data check, each row) and each run's
``timing.jsonl`` (per-epoch stages) record wall times.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import dejavid.runtime  # noqa: F401  (before torch: OpenMP wait policy, numba vector width)
import torch
from tqdm import tqdm

from dejavid.report import rows as baselines
from dejavid.config import cli
from dejavid.report import plots
from dejavid.model.centroids import flatten_prototypes, load_or_compute_centroids
from dejavid.training.checkpoint import load_checkpoint
from dejavid.config.files import RESUME_OVERRIDABLE, load_config, parse_overrides
from dejavid.training.tune import TUNE_FILE, choose_for_config
from dejavid.data.dataset import TSEDataset
from dejavid.device import resolve_device
from dejavid.io import atomic_write_text
from dejavid.report.table import (METHODS, ROW, TITLES, TRAINED, default_encoder_params, format_table,
                             trained_result)
from dejavid.training.rng import seed_everything
from dejavid.config.settings import index_from_config, resolve_auto, settings_from_config
from dejavid.training.timing import timer_from_env
from dejavid.training.run import fit

NOT_APPLICABLE = {"encoder_logits": "--methods encoder_logits needs the encoder's class logits "
                                    "in the features: set logit_columns to the number of "
                                    "classes when they are the last columns of each step"}
# Keys that do not change what a run computes (accepted on resume).
NOT_COMPARED = set(RESUME_OVERRIDABLE) | {"run_name", "output_dir"}


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--out", help="reproduce folder (default <output_dir>/reproduce-<name>)")
    p.add_argument("--methods",
                   help=f"comma-separated subset of: {', '.join(METHODS)} (default: all; "
                        f"encoder_logits only when the config sets logit_columns)")
    p.add_argument("--encoder_params", type=float,
                   help="parameter count of the encoder that produced the features (default "
                        "1013e6, VideoMAE V2-g, for the configs hmdb51, k400 and ssv2); "
                        "without it the 'share of encoder' column is n/a")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    p.add_argument("--plot_video", help="video id for the alignment plot "
                                        "(default: the first video of the evaluation split)")
    args, rest = cli.parse(p, argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("run reproduce.py as one process, not under torchrun")
    methods = parse_methods(args.methods or ",".join(METHODS))
    if any(k == "run_name" for k, _ in parse_overrides(rest)):
        raise ValueError("reproduce names its runs after the methods; choose the folder with --out")
    cfg = load_config(args.config, rest)
    out = (Path(args.out) if args.out
           else Path(cfg["output_dir"]) / f"reproduce-{cfg['name'] or 'dejavid'}")
    encoder_params = (args.encoder_params if args.encoder_params is not None
                      else default_encoder_params(cfg["name"]))
    progress, log = not args.no_progress, tqdm.write
    t_start = time.time()
    timer = timer_from_env()   # DEJAVID_TIMING=1: wall time of the data check and of each row

    seed_everything(cfg["seed"])
    device = resolve_device(cfg["device"])
    with timer.stage("data check"):
        index = index_from_config(cfg, progress, log=log)
        train_ds = TSEDataset(index, cfg["train_split"], cfg["in_memory"], progress)
        eval_ds = TSEDataset(index, cfg["eval_split"], cfg["in_memory"], progress)
    settings = settings_from_config(cfg)   # after the data: 'auto' values are resolved now
    pattern = settings.model.step_pattern
    estimators = {m: ROW[m].factory(cfg, index.num_classes, index.feature_size)
                  for m in methods if ROW[m].kind == "estimator"}
    for m, est in estimators.items():
        if est is None:
            if args.methods:   # asked for by name: say what is missing
                raise ValueError(NOT_APPLICABLE.get(m, f"--methods {m}: this row does not "
                                                       f"apply to the config"))
            methods.remove(m)
    log(f"reproduce folder: {out}; methods: {', '.join(methods)}")

    results = {}
    for m in methods:
        kind = ROW[m].kind
        with timer.stage(m):
            if kind == "estimator":
                results[m] = baselines.run_estimator_row(m, estimators[m], out / "baselines",
                                                         train_ds, eval_ds, settings, progress,
                                                         log)
            elif kind == "baseline":
                results[m] = baselines.run_baseline(m, out / "baselines", train_ds, eval_ds,
                                                    settings, cfg["cache_dir"], device, progress,
                                                    log)
            else:
                rc = train_or_reuse(m, out, args, rest, train_ds, eval_ds, device, progress, log)
                if rc:
                    log(f"{m} stopped (exit code {rc}); run the same command again to continue")
                    return rc
                results[m] = trained_result(out / m, m, len(eval_ds))
    if timer.enabled:
        atomic_write_text(json.dumps(timer.lap(), indent=1) + "\n", out / "timing.json")

    header = (f"Train split '{cfg['train_split']}' ({len(train_ds)} videos), evaluated on "
              f"'{cfg['eval_split']}' ({len(eval_ds)} videos); C = {index.num_classes}, "
              f"F = {index.feature_size}, K = {cfg['num_timesteps']}, step pattern {pattern}, "
              f"{cfg['num_epochs']} epochs per DejaVid run.")
    table = format_table(results, name=cfg["name"], header=header, encoder_params=encoder_params)
    atomic_write_text(table, out / "results.md")
    atomic_write_text(json.dumps({"name": cfg["name"], "header": header,
                                  "encoder_params": encoder_params,
                                  "rows": [asdict(r) for r in results.values()]}, indent=1) + "\n",
                      out / "results.json")
    if not args.no_plots:
        make_plots(out, results, index, cfg, train_ds, eval_ds, args.plot_video, log)
    print(table)
    log(f"done in {time.time() - t_start:.1f} s; table in {out / 'results.md'}")
    return 0


def parse_methods(text: str) -> list[str]:
    """'dejavid,meanpool_lr' -> ['meanpool_lr', 'dejavid'] (always in table order)."""
    asked = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in asked if m not in METHODS]
    if bad or not asked:
        raise ValueError(f"unknown method(s) {', '.join(bad) or '(none given)'}; "
                         f"choose from {', '.join(METHODS)}")
    return [m for m in METHODS if m in asked]


def train_or_reuse(method: str, out: Path, args, rest: list[str], train_ds, eval_ds, device,
                   progress: bool, log) -> int:
    """Make ``out/method`` hold a finished training run; returns 0, or 130 when it stopped.

    A finished run is reused, a partly trained one resumed; one trained with other
    settings or data is an error (never silently reused, never overwritten).
    """
    index = train_ds.index
    run_dir = out / method
    overrides = [*rest, "--output_dir", str(out), "--run_name", method]
    for key, value in ROW[method].overrides:
        overrides += [f"--{key}", json.dumps(value)]
    run_cfg = load_config(args.config, overrides)
    resolve_auto(run_cfg, index.lengths[index.rows(run_cfg["train_split"])])
    want = json.loads(json.dumps({
        "method": method,
        "config": {k: v for k, v in sorted(run_cfg.items()) if k not in NOT_COMPARED},
        "train_fingerprint": index.fingerprint(run_cfg["train_split"]),
        "eval_fingerprint": index.fingerprint(run_cfg["eval_split"])}))
    meta_path = run_dir / "reproduce.json"
    ckpt = None
    if (run_dir / "last.pt").is_file() or (run_dir / "best.pt").is_file():
        check_same_run(run_dir, meta_path, want)
        ckpt = load_checkpoint(run_dir)   # last.pt, or best.pt when a crash came between them
        if ckpt["step"] == 0 and ckpt["epoch"] >= run_cfg["num_epochs"]:
            log(f"reusing finished run {run_dir} ({ckpt['epoch']} epochs)")
            return 0
        log(f"resuming {TITLES[method]} in {run_dir} (epoch {ckpt['epoch'] + 1}, "
            f"step {ckpt['step']})")
        # The run's own config, with the user's overrides that do not change what it computes.
        run_cfg = load_config(None, resume_overrides(rest), base=ckpt["config"])
    else:
        atomic_write_text(json.dumps(want, indent=1) + "\n", meta_path)
        log(f"training {TITLES[method]} in {run_dir}")
    settings, choice = settings_from_config(run_cfg), None
    if ckpt is None and run_cfg["tune"] == "cv":   # (a resumed run keeps its recorded choice)
        run_cfg, settings, choice = choose_for_config(run_cfg, settings, train_ds, device,
                                                      progress, log=tqdm.write)
    result = fit(train_ds, eval_ds, settings, device=device,
                 cache_dir=run_cfg["cache_dir"], run_dir=run_dir, resume=ckpt, config=run_cfg,
                 progress=progress, log=tqdm.write)
    if choice is not None:
        atomic_write_text(json.dumps(choice.as_dict(), indent=2) + "\n", run_dir / TUNE_FILE)
    return 130 if result.stopped else 0


def check_same_run(run_dir: Path, meta_path: Path, want: dict) -> None:
    if not meta_path.is_file():
        raise ValueError(f"{run_dir} holds a run that reproduce.py did not start; "
                         f"use another --out or move it away")
    have = json.loads(meta_path.read_text())
    if have == want:
        return
    diffs = [f"{k}: {have['config'].get(k)!r} there, {v!r} now"
             for k, v in want["config"].items() if have.get("config", {}).get(k) != v]
    diffs += [f"{s} data changed" for s in ("train", "eval")
              if have.get(f"{s}_fingerprint") != want[f"{s}_fingerprint"]]
    raise ValueError(f"{run_dir} was trained with other settings or data "
                     f"({'; '.join(diffs) or 'different method'}); use another --out, "
                     f"or delete {run_dir} to train it again")


def resume_overrides(rest: list[str]) -> list[str]:
    """The user's overrides that a resumed run accepts (device, workers, paths...)."""
    argv = []
    for key, value in parse_overrides(rest):
        if key in NOT_COMPARED - {"run_name", "output_dir"}:
            argv += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return argv


def make_plots(out: Path, results: dict, index, cfg: dict, train_ds: TSEDataset,
               eval_ds: TSEDataset, plot_video, log) -> None:
    """learning_curves.png, weights_per_class.png, weights_mean.png, alignment_path.png."""
    trained = [m for m in TRAINED if m in results]
    if not trained:
        log("plots skipped: they show trained DejaVid runs and none was asked for")
        return
    ckpts = {m: load_checkpoint(out / m) for m in trained}
    try:
        written = [plots.learning_curves(
            {TITLES[m]: ckpts[m]["history"] for m in trained}, out / "learning_curves.png",
            {TITLES[m]: r.top1 for m, r in results.items() if m not in TRAINED},
            title=f"{cfg['name']}: DejaVid training")]
        m = trained[-1]  # the full model when it was trained
        mu, theta = ckpts[m]["model"]["mu"], ckpts[m]["model"]["theta"]
        # several prototypes per class (centroids_per_class, or chosen by tune: cv): the
        # weights per class are the mean over its prototypes
        proto_class = (ckpts[m].get("pool") or {}).get("proto_class")
        C = len(index.label_values)
        written += plots.weight_heatmaps(plots.class_mean(theta, proto_class, C),
                                         index.label_values, out / "weights_per_class.png",
                                         out / "weights_mean.png", title=TITLES[m])
        # the trained run's own settings (tune: cv may have changed them): its start and
        # how it aligns
        trained_settings = settings_from_config(load_config(None, [], base=ckpts[m]["config"]))
        mu0, class0 = flatten_prototypes(load_or_compute_centroids(
            train_ds, trained_settings.centroids, cfg["cache_dir"], False, log)[0])
        n = video_position(eval_ds, plot_video)
        x, y, k = eval_ds[n]
        written.append(plots.alignment_path(
            x, y, {"DBA centroid, unit weights (before training)":
                   (mu0, torch.zeros_like(mu0), class0),
                   f"{TITLES[m]}, trained": (mu, theta, proto_class)},
            trained_settings.model.step_pattern, out / "alignment_path.png", index.label_values,
            title=f"{cfg['eval_split']} video {index.ids[k]!r} (class {index.label_values[y]})",
            band=trained_settings.model.band,
            resample_inputs=trained_settings.model.resample_inputs,
            open_ends=trained_settings.model.open_ends))
    except plots.MissingDependency as exc:
        log(f"plots skipped: {exc}")
        return
    log("plots: " + ", ".join(str(p) for p in written))


def video_position(ds: TSEDataset, video_id) -> int:
    """Position in ``ds`` of ``video_id`` (compared as text); the first video when None."""
    if video_id is None:
        return 0
    for n, k in enumerate(ds.rows):
        if str(ds.index.ids[k]) == str(video_id):
            return n
    raise ValueError(f"--plot_video {video_id!r} is not a video of the evaluation split")


if __name__ == "__main__":
    cli.main_guard(main)
