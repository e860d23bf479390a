"""Train and evaluate DejaVid on per-video embeddings.

    python train_dejavid.py --config configs/hmdb51.yaml [--key value ...]
    python train_dejavid.py --resume runs/<run>            # continue exactly
    python train_dejavid.py --eval-only --checkpoint runs/<run>/best.pt --predictions preds.csv
    python train_dejavid.py --eval-only --checkpoint runs/<run>/best.pt --config other.yaml
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import dejavid.runtime  # noqa: F401  (before torch: OpenMP wait policy, numba vector width)
from tqdm import tqdm

from dejavid.config import cli
from dejavid.training import distributed as ddp
from dejavid.training.checkpoint import load_checkpoint
from dejavid.config.files import RESUME_OVERRIDABLE, load_config, parse_overrides
from dejavid.data.dataset import TSEDataset
from dejavid.training.engine import evaluate
from dejavid.io import (RunLock, atomic_write_text, check_not_managed, check_writable_dir, check_writable_file,
                        is_read_only_dir)
from dejavid.training.predictions import write_predictions
from dejavid.config.settings import index_from_config, settings_from_config
from dejavid.training.batching import WORKER_BYTES, worker_limit
from dejavid.training.run import RUN_FILES, fit, model_from_checkpoint
from dejavid.training.tune import TUNE_FILE, choose_for_config


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--resume", help="run folder or checkpoint to continue")
    p.add_argument("--eval-only", action="store_true",
                   help="only evaluate --checkpoint (with --config: on that config's data)")
    p.add_argument("--checkpoint", help="checkpoint to evaluate with --eval-only")
    p.add_argument("--allow-changed-data", action="store_true",
                   help="with --resume: continue although the data differs from the checkpoint's")
    p.add_argument("--predictions", help="with --eval-only: write per-video predictions to this CSV")
    p.add_argument("--verify-data", action="store_true",
                   help="re-read every feature file and compare it with the feature store")
    p.add_argument("--allow-eval-on-train", action="store_true",
                   help="evaluate on the training split itself (train_split = eval_split); "
                        "the reported top-1 then measures fit, not generalisation")
    args, rest = cli.parse(p, argv)
    check_flags(args)

    ckpt = None
    if args.eval_only:
        ckpt = load_checkpoint(args.checkpoint)
        bad = sorted(k for k, _ in parse_overrides(rest) if k not in EVAL_OVERRIDABLE)
        if bad:
            raise ValueError(f"--eval-only evaluates the checkpoint's model as it was trained, so "
                             f"{', '.join('--' + k for k in bad)} cannot apply (model and "
                             f"training keys come from the checkpoint); allowed: "
                             f"{', '.join(sorted(EVAL_OVERRIDABLE))}")
        base = dict(ckpt["config"])
        if args.config:
            # Evaluate on that config's data; what the model is comes from the checkpoint.
            data_cfg = load_config(args.config)
            base.update({k: data_cfg[k] for k in EVAL_DATA_KEYS})
        cfg = load_config(None, rest, base=base)
    elif args.resume:
        ckpt = load_checkpoint(args.resume)
        bad = sorted(k for k, _ in parse_overrides(rest) if k not in RESUME_OVERRIDABLE)
        if bad:
            raise ValueError(f"cannot change {', '.join(bad)} when resuming (the run would no "
                             f"longer be the same); allowed: {', '.join(sorted(RESUME_OVERRIDABLE))}")
        cfg = resumed_config(load_config(None, rest, base=ckpt["config"]), args.resume,
                             parse_overrides(rest))
    else:
        cfg = load_config(args.config, rest)
    info, device = ddp.init(cfg["device"])
    try:
        return run(args, cfg, ckpt, info, device, not args.no_progress and info.is_main)
    finally:
        ddp.shutdown()


# With --eval-only --config Y: the keys taken from Y (which data, how it is read); the
# model's own keys (step pattern, K, std_eps, ...) stay the checkpoint's.
EVAL_DATA_KEYS = ("id2feats", "id2splits", "id2labels", "id2fname", "train_split",
                  "eval_split", "num_classes", "feature_size", "in_memory", "num_workers",
                  "eval_batch_size", "device", "backend", "store", "store_dtype",
                  "store_on_device")
# What --eval-only accepts as --key value: where the data is and how it is read.
EVAL_OVERRIDABLE = frozenset(EVAL_DATA_KEYS) | {"cache_dir"}


def run_folder_of(resume: str) -> Path:
    """The run folder that ``--resume`` names (a folder, or a checkpoint in it)."""
    path = Path(resume)
    return path if path.is_dir() else path.parent


def resumed_config(cfg: dict, resume: str, overrides: list) -> dict:
    """The config of a resumed run with ``output_dir``/``run_name`` set to the folder it
    really continues in, so that its checkpoints record that.  An ``--output_dir`` naming
    another folder is refused: a resume continues in its own run folder."""
    run_dir = run_folder_of(resume)
    asked = [v for k, v in overrides if k == "output_dir"]
    if asked and Path(str(asked[-1])).resolve() != run_dir.parent.resolve():
        raise ValueError(f"--output_dir {asked[-1]} with --resume {resume}: a resumed run "
                         f"continues in its own folder {run_dir}, so it cannot write to "
                         f"{asked[-1]}; drop --output_dir, or move the run folder there first "
                         f"and resume from its new place")
    return {**cfg, "output_dir": str(run_dir.parent), "run_name": run_dir.name}


def check_flags(args) -> None:
    """Refuse flag combinations that would otherwise be silently ignored."""
    if args.eval_only and args.resume:
        raise ValueError("--eval-only and --resume exclude each other: evaluate a checkpoint "
                         "with --eval-only --checkpoint <file>, or continue a run with --resume")
    if args.eval_only and not args.checkpoint:
        raise ValueError("--eval-only needs --checkpoint <path>")
    if not args.eval_only:
        given = [f for f, v in (("--checkpoint", args.checkpoint),
                                ("--predictions", args.predictions)) if v]
        if given:
            raise ValueError(f"{' and '.join(given)} only work(s) with --eval-only; add "
                             f"--eval-only to evaluate, or drop {' and '.join(given)} to train")
    if args.allow_changed_data and not args.resume:
        raise ValueError("--allow-changed-data only applies to --resume")
    if args.resume and args.config:
        raise ValueError("--resume continues a run with the config saved in its checkpoint, so "
                         "--config cannot apply; drop --config (where the data and outputs live "
                         f"can change with --key value: {', '.join(sorted(RESUME_OVERRIDABLE))})")


def check_splits(cfg: dict, allowed: bool) -> None:
    """Refuse evaluating on the training split (its top-1 measures fit, not
    generalisation) unless ``--allow-eval-on-train`` asks for it."""
    if cfg["train_split"] == cfg["eval_split"] and not allowed:
        raise ValueError(f"train_split and eval_split are both '{cfg['eval_split']}': the "
                         f"evaluation would report accuracy on the training videos themselves; "
                         f"set eval_split (or train_split) to another split, or pass "
                         f"--allow-eval-on-train to do this on purpose")


# The files dejavid keeps in a run folder.
MANAGED_RUN_FILES = (*RUN_FILES, RunLock.FILE, "timing.jsonl")


def check_predictions_path(args, cfg: dict) -> None:
    """Refuse a ``--predictions`` path that is an input of the command (the checkpoint,
    the config, an id2* map), a file of a run folder, or inside ``cache_dir``."""
    inputs = {"the checkpoint": args.checkpoint, "the config file": args.config,
              **{f"the {k} map": cfg[k] for k in ("id2splits", "id2labels", "id2fname")}}
    for folder in (Path(args.checkpoint).parent, Path(args.predictions).parent):
        if any((folder / f).exists() for f in MANAGED_RUN_FILES):   # a run folder
            inputs.update({f"{f} of run folder {folder}": folder / f for f in MANAGED_RUN_FILES})
    check_not_managed(args.predictions, "--predictions file", inputs,
                      {"cache_dir (centroid cache and feature store)": cfg["cache_dir"]})


def feature_file_at(index, path) -> str:
    """The feature file of ``index`` that ``path`` names, or '' when it names none."""
    try:
        rel = Path(path).resolve().relative_to(Path(index.root).resolve())
    except ValueError:
        return ""
    names = {os.path.normpath(f) for f in index.files}
    return str(Path(index.root) / rel) if os.path.normpath(rel) in names else ""


def _load_data(args, cfg, info, progress):
    """The data index.  With the feature store, rank 0 builds (or checks) it first and the
    other ranks open it after rank 0 is done, as with the centroids."""
    if not (info.enabled and cfg["store"]):
        return index_from_config(cfg, progress, log=print if info.is_main else None,
                                 verify=args.verify_data)
    index, error = None, None
    if info.is_main:
        try:
            index = index_from_config(cfg, progress, log=print, verify=args.verify_data)
        except (ValueError, FileNotFoundError) as exc:
            error = exc
    # The barrier; when rank 0 failed, it reports its error and the others end quietly.
    ddp.agree(error, info)
    return index if info.is_main else index_from_config(cfg, progress=False)


def run(args, cfg: dict, ckpt, info, device, progress: bool) -> int:
    if cfg["store_on_device"] and cfg["num_workers"]:
        if info.is_main:
            tqdm.write("store_on_device: batches are sliced in device memory, which worker "
                       "processes cannot share; num_workers set to 0")
        cfg = {**cfg, "num_workers": 0}
    limit = worker_limit()
    if cfg["num_workers"] > limit:
        if info.is_main:
            tqdm.write(f"num_workers {cfg['num_workers']} is more than this machine can run "
                       f"({limit}: one per CPU this process may use, each with "
                       f"{WORKER_BYTES / 2**30:.2g} GiB of the free memory); using {limit}")
        cfg = {**cfg, "num_workers": limit}
    check_splits(cfg, args.allow_eval_on_train)
    # Every output location is checked before the data check and the centroids.
    if args.eval_only:
        if args.predictions:
            check_writable_file(args.predictions, "--predictions file")
            check_predictions_path(args, cfg)
    else:
        check_writable_dir(cfg["output_dir"], "output_dir")
        if is_read_only_dir(cfg["cache_dir"]):
            # What it holds (a current feature store, cached centroids) is used; anything it
            # lacks is an error where it would be written, before it is computed.
            if info.is_main:
                print(f"cache_dir {cfg['cache_dir']} is read-only: using the feature store and "
                      f"centroids it holds")
        else:
            check_writable_dir(cfg["cache_dir"], "cache_dir")
    index = _load_data(args, cfg, info, progress)
    if args.predictions:
        check_not_managed(args.predictions, "--predictions file",
                          {"a feature file": feature_file_at(index, args.predictions)}, {})
    if ckpt is not None and ckpt.get("standardize") is not None:
        index.feature_stats = ckpt["standardize"]   # the statistics the model was trained with
    settings = settings_from_config(cfg)   # after the data: 'auto' values are resolved now
    store_device = device if cfg["store_on_device"] else None
    choice, train_split = None, None
    if not args.eval_only and not args.resume and cfg["tune"] == "cv":
        # Before the evaluation split is even opened: the choice sees the training split only.
        if info.enabled:
            raise ValueError("tune: cv runs in one process; choose the settings without "
                             "torchrun (tune: cv, then read the chosen values from tune.json), "
                             "and train them under torchrun with tune: none")
        train_split = TSEDataset(index, cfg["train_split"], cfg["in_memory"], progress=False)
        cfg, settings, choice = choose_for_config(cfg, settings, train_split, device, progress,
                                                  log=tqdm.write)
    eval_ds = TSEDataset(index, cfg["eval_split"], cfg["in_memory"], progress, store_device)

    if args.eval_only:
        if list(ckpt["label_values"]) != list(index.label_values):
            raise ValueError("the classes in the data differ from those the checkpoint was "
                             "trained on")
        if ckpt["model"]["mu"].shape[-1] != index.feature_size:
            raise ValueError(f"the data has F = {index.feature_size} features per step but the "
                             f"checkpoint was trained on F = {ckpt['model']['mu'].shape[-1]}")
        model = model_from_checkpoint(ckpt, settings.model, settings.loop.std_eps).to(device)
        res = evaluate(model, eval_ds, settings.loop, device, progress,
                       keep_predictions=bool(args.predictions), info=info)
        if not info.is_main:
            return 0
        same = (" (the split the checkpoint was trained on: --allow-eval-on-train)"
                if cfg["train_split"] == cfg["eval_split"] else "")
        print(f"eval on '{cfg['eval_split']}'{same} ({res['count']} videos): loss "
              f"{res['loss']:.4f} top1 {res['top1']:.4f} top5 {res['top5']:.4f}")
        if args.predictions:
            write_predictions(args.predictions, index, res["predictions"])
            print(f"predictions written to {args.predictions}")
        return 0

    # the split the choice read serves training too, unless training slices the device store
    train_ds = (train_split if train_split is not None and store_device is None else
                TSEDataset(index, cfg["train_split"], cfg["in_memory"], progress, store_device))
    claimed = not args.resume and not cfg["run_name"] and info.is_main
    run_dir = (run_folder_of(args.resume) if args.resume
               else cli.default_run_dir(cfg, create=info.is_main))
    if not args.resume and info.enabled:
        run_dir = Path(ddp.gather_objects(str(run_dir), info)[0])  # rank 0's timestamped name
    try:
        result = fit(train_ds, eval_ds, settings, device=device, cache_dir=cfg["cache_dir"],
                     run_dir=run_dir, resume=ckpt, config=cfg, progress=progress,
                     log=tqdm.write, info=info, allow_changed_data=args.allow_changed_data,
                     tensorboard=cfg["tensorboard"] or None)
    except BaseException:
        if claimed:
            with contextlib.suppress(OSError):
                run_dir.rmdir()   # the folder claimed above, if the run left nothing in it
        raise
    if choice is not None and info.is_main:
        atomic_write_text(json.dumps(choice.as_dict(), indent=2) + "\n", Path(run_dir) / TUNE_FILE)
        tqdm.write(f"tuning record: {Path(run_dir) / TUNE_FILE}")
    return 130 if result.stopped else 0


if __name__ == "__main__":
    cli.main_guard(main)
