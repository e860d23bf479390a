"""Baselines beside DejaVid on one dataset: one results table and plots.

    python reproduce.py --config configs/japanese_vowels.yaml [--key value ...]
    python reproduce.py --config configs/hmdb51.yaml --encoder_params 304e6 --methods meanpool_lr,dba_centroid,dejavid

Methods (``--methods``, default all): meanpool_lr, knn_dtw, dba_centroid,
dejavid_frozen, dejavid.  Everything lives in the reproduce folder (``--out``,
default ``<output_dir>/reproduce-<name>``): baseline results as JSON under
``baselines/``, one train_dejavid run folder per trained method, then
``results.md``, ``results.json`` and the PNG plots.  A second call reuses
every finished result and resumes a partly trained run.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import dejavid  # noqa: F401  (before torch: sets OpenMP's wait policy, see dejavid/__init__.py)
import torch
from tqdm import tqdm

import train_dejavid
from dejavid import baselines, cli, plots
from dejavid.baselines import BASELINES, METHODS, TITLES, TRAINED
from dejavid.centroids import load_or_compute_centroids
from dejavid.config import load_config, parse_overrides, step_pattern
from dejavid.data import TSEDataset, load_index
from dejavid.engine import load_checkpoint
from dejavid.io import atomic_write_text

# Keys that do not change what a run computes (train_dejavid accepts them on resume).
NOT_COMPARED = set(train_dejavid.RESUME_OVERRIDABLE) | {"run_name", "output_dir"}


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--out", help="reproduce folder (default <output_dir>/reproduce-<name>)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated subset of: {', '.join(METHODS)}")
    p.add_argument("--encoder_params", type=float,
                   help="parameter count of the encoder that produced the features; "
                        "without it the 'share of encoder' column is n/a")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    p.add_argument("--plot_video", help="video id for the alignment plot "
                                        "(default: the first video of the evaluation split)")
    args, rest = cli.parse(p, argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("run reproduce.py as one process, not under torchrun")
    methods = parse_methods(args.methods)
    if any(k == "run_name" for k, _ in parse_overrides(rest)):
        raise ValueError("reproduce names its runs after the methods; choose the folder with --out")
    cfg = load_config(args.config, rest)
    out = (Path(args.out) if args.out
           else Path(cfg["output_dir"]) / f"reproduce-{cfg['name'] or 'dejavid'}")
    progress, log = not args.no_progress, tqdm.write
    t_start = time.time()

    cli.seed_everything(cfg["seed"])
    device = cli.resolve_device(cfg["device"])
    index = load_index(cfg, progress)
    pattern = step_pattern(cfg)
    train_ds = TSEDataset(index, cfg["train_split"], cfg["in_memory"], progress)
    eval_ds = TSEDataset(index, cfg["eval_split"], cfg["in_memory"], progress)
    log(f"reproduce folder: {out}; methods: {', '.join(methods)}")

    results = {}
    for m in methods:
        if m in BASELINES:
            results[m] = baselines.run_baseline(m, out / "baselines", index, cfg, train_ds,
                                                eval_ds, pattern, device, progress, log)
            continue
        rc = train_or_reuse(m, out, args, rest, index, cfg, log)
        if rc:
            log(f"{m} stopped (exit code {rc}); run the same command again to continue")
            return rc
        results[m] = baselines.trained_result(out / m, m, len(eval_ds))

    header = (f"Train split '{cfg['train_split']}' ({len(train_ds)} videos), evaluated on "
              f"'{cfg['eval_split']}' ({len(eval_ds)} videos); C = {index.num_classes}, "
              f"F = {index.feature_size}, K = {cfg['num_timesteps']}, step pattern {pattern}, "
              f"{cfg['num_epochs']} epochs per DejaVid run.")
    table = baselines.format_table(results, name=cfg["name"], header=header,
                                   encoder_params=args.encoder_params)
    atomic_write_text(table, out / "results.md")
    atomic_write_text(json.dumps({"name": cfg["name"], "header": header,
                                  "encoder_params": args.encoder_params,
                                  "rows": [asdict(r) for r in results.values()]}, indent=1) + "\n",
                      out / "results.json")
    if not args.no_plots:
        make_plots(out, results, index, cfg, eval_ds, pattern, args.plot_video, log)
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


def train_or_reuse(method: str, out: Path, args, rest: list[str], index, cfg: dict, log) -> int:
    """Make ``out/method`` hold a finished train_dejavid run; returns train_dejavid's exit code.

    A finished run is reused, a partly trained one resumed; one trained with other
    settings or data is an error (never silently reused, never overwritten).
    """
    run_dir = out / method
    overrides = [*rest, "--output_dir", str(out), "--run_name", method,
                 "--freeze_centroids", "true" if method == "dejavid_frozen" else "false"]
    run_cfg = load_config(args.config, overrides)
    want = json.loads(json.dumps({
        "method": method,
        "config": {k: v for k, v in sorted(run_cfg.items()) if k not in NOT_COMPARED},
        "train_fingerprint": index.fingerprint(cfg["train_split"]),
        "eval_fingerprint": index.fingerprint(cfg["eval_split"])}))
    meta_path = run_dir / "reproduce.json"
    flags = ["--no-progress"] if args.no_progress else []
    if (run_dir / "last.pt").is_file():
        check_same_run(run_dir, meta_path, want)
        ckpt = load_checkpoint(run_dir / "last.pt")
        if ckpt["step"] == 0 and ckpt["epoch"] >= ckpt["config"]["num_epochs"]:  # resolved value
            log(f"reusing finished run {run_dir} ({ckpt['epoch']} epochs)")
            return 0
        log(f"resuming {TITLES[method]} in {run_dir} (epoch {ckpt['epoch'] + 1}, "
            f"step {ckpt['step']})")
        return train_dejavid.main(["--resume", str(run_dir), *resume_overrides(rest), *flags])
    atomic_write_text(json.dumps(want, indent=1) + "\n", meta_path)
    log(f"training {TITLES[method]} in {run_dir}")
    config = ["--config", args.config] if args.config else []
    return train_dejavid.main([*config, *overrides, *flags])


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
    """The user's overrides that train_dejavid accepts on resume (device, workers, paths...)."""
    argv = []
    for key, value in parse_overrides(rest):
        if key in NOT_COMPARED - {"run_name", "output_dir"}:
            argv += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return argv


def make_plots(out: Path, results: dict, index, cfg: dict, eval_ds: TSEDataset, pattern: str,
               plot_video, log) -> None:
    """learning_curves.png, weights_per_class.png, weights_mean.png, alignment_path.png."""
    trained = [m for m in TRAINED if m in results]
    if not trained:
        log("plots skipped: they show trained DejaVid runs and none was asked for")
        return
    ckpts = {m: load_checkpoint(out / m / "last.pt") for m in trained}
    try:
        written = [plots.learning_curves(
            {TITLES[m]: ckpts[m]["history"] for m in trained}, out / "learning_curves.png",
            {TITLES[m]: results[m].top1 for m in BASELINES if m in results},
            title=f"{cfg['name']}: DejaVid training")]
        m = trained[-1]  # the full model when it was trained
        mu, theta = ckpts[m]["model"]["mu"], ckpts[m]["model"]["theta"]
        written += plots.weight_heatmaps(theta, index.label_values, out / "weights_per_class.png",
                                         out / "weights_mean.png", title=TITLES[m])
        mu0, _ = load_or_compute_centroids(index, cfg, pattern, cfg["backend"], False, log)
        n = video_position(eval_ds, plot_video)
        x, y, k = eval_ds[n]
        written.append(plots.alignment_path(
            x, y, {"DBA centroid, unit weights (before training)": (mu0, torch.zeros_like(mu0)),
                   f"{TITLES[m]}, trained": (mu, theta)},
            pattern, out / "alignment_path.png", index.label_values,
            title=f"{cfg['eval_split']} video {index.ids[k]!r} (class {index.label_values[y]})"))
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
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError, baselines.MissingDependency) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
