"""Train and evaluate DejaVid on per-video embeddings.

    python train_dejavid.py --config configs/hmdb51.yaml [--key value ...]
    python train_dejavid.py --resume runs/<run>            # continue exactly
    python train_dejavid.py --eval-only --checkpoint runs/<run>/best.pt --predictions preds.csv
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import dejavid  # noqa: F401  (before torch: sets OpenMP's wait policy, see dejavid/__init__.py)
import torch
from tqdm import tqdm

from dejavid import cli
from dejavid import distributed as ddp
from dejavid.centroids import load_or_compute_centroids
from dejavid.config import format_config, load_config, parse_overrides, step_pattern
from dejavid.data import TSEDataset, load_index
from dejavid.engine import (MetricsLog, Running, StopRequest, evaluate, format_epoch,
                            load_checkpoint, restore_model, save_checkpoint, set_rng_state,
                            train_one_epoch, write_predictions)
from dejavid.model import DejaVid, build_optimizer, build_scheduler, count_parameters

# Keys that may change when resuming without breaking exactness.
RESUME_OVERRIDABLE = {"num_workers", "device", "backend", "in_memory", "output_dir",
                      "id2feats", "id2splits", "id2labels", "id2fname", "cache_dir",
                      "store_on_device"}


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--resume", help="run folder or checkpoint to continue")
    p.add_argument("--eval-only", action="store_true", help="only evaluate --checkpoint")
    p.add_argument("--checkpoint", help="checkpoint to evaluate with --eval-only")
    p.add_argument("--predictions", help="with --eval-only: write per-video predictions to this CSV")
    p.add_argument("--verify-data", action="store_true",
                   help="re-read every feature file and compare it with the feature store")
    args, rest = cli.parse(p, argv)
    progress = not args.no_progress

    ckpt = None
    if args.eval_only or args.resume:
        src = args.checkpoint if args.eval_only else args.resume
        if not src:
            raise ValueError("--eval-only needs --checkpoint <path>")
        ckpt = load_checkpoint(src)
        overrides = parse_overrides(rest)
        if args.resume:
            bad = sorted(k for k, _ in overrides if k not in RESUME_OVERRIDABLE)
            if bad:
                raise ValueError(f"cannot change {', '.join(bad)} when resuming (the run would no "
                                 f"longer be the same); allowed: {', '.join(sorted(RESUME_OVERRIDABLE))}")
        cfg = load_config(None, rest, base=ckpt["config"])
    else:
        cfg = load_config(args.config, rest)
    info, device = ddp.init(cfg["device"])
    try:
        return run(args, cfg, ckpt, info, device, progress and info.is_main)
    finally:
        ddp.shutdown()


def _load_data(args, cfg, info, device, progress):
    """The data index.  With the feature store, rank 0 builds (or checks) it first and the
    other ranks open it after rank 0 is done, as with the centroids."""
    if not (info.enabled and cfg["store"]):
        return load_index(cfg, progress=progress, verify=args.verify_data)
    if info.is_main:
        failed = True
        try:
            index = load_index(cfg, progress=progress, verify=args.verify_data)
            failed = False
        finally:
            # The barrier; it also tells the waiting ranks whether rank 0 failed.
            ddp.any_flag(failed, info, device)
        return index
    if ddp.any_flag(False, info, device):
        raise ValueError("rank 0 could not load the data; its error says why")
    return load_index(cfg, progress=False)


def run(args, cfg, ckpt, info, device, progress) -> int:
    log = tqdm.write if info.is_main else (lambda *a, **k: None)
    if cfg["batch_size"] % info.world_size:
        raise ValueError(f"batch_size {cfg['batch_size']} is the global batch and must divide by "
                         f"the number of processes ({info.world_size})")
    cli.seed_everything(cfg["seed"])

    index = _load_data(args, cfg, info, device, progress)
    if ckpt is not None and list(ckpt["label_values"]) != list(index.label_values):
        raise ValueError("the classes in the data differ from those the checkpoint was trained on")
    pattern = step_pattern(cfg)
    store_device = device if cfg["store_on_device"] else None
    eval_ds = TSEDataset(index, cfg["eval_split"], cfg["in_memory"], progress, store_device)

    if args.eval_only:
        model = DejaVid(ckpt["model"]["mu"], pattern, cfg["use_fixed_path"], backend=cfg["backend"])
        model.fixed_path = False  # evaluation aligns with the trained parameters
        restore_model(model, ckpt)
        model.to(device)
        res = evaluate(model, eval_ds, cfg, device, progress,
                       keep_predictions=bool(args.predictions), info=info)
        if not info.is_main:
            return 0
        print(f"eval on '{cfg['eval_split']}' ({res['count']} videos): loss {res['loss']:.4f} "
              f"top1 {res['top1']:.4f} top5 {res['top5']:.4f}")
        if args.predictions:
            write_predictions(args.predictions, index, res["predictions"])
            print(f"predictions written to {args.predictions}")
        return 0

    run_dir = Path(args.resume) if args.resume else cli.default_run_dir(cfg)
    if args.resume and not run_dir.is_dir():
        run_dir = run_dir.parent
    if not args.resume and info.enabled:
        run_dir = Path(ddp.gather_objects(str(run_dir), info)[0])  # rank 0's timestamped name
    if not args.resume and (run_dir / "last.pt").exists():
        raise ValueError(f"run folder {run_dir} already holds a run; continue it with "
                         f"--resume {run_dir} or pick another --run_name")
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    log(f"run folder: {run_dir}\nconfig:\n{format_config(cfg)}")

    # Rank 0 computes the centroids once; the other ranks wait, then read its cache file.
    if info.is_main:
        mu0, _ = load_or_compute_centroids(index, cfg, pattern, cfg["backend"], progress, log)
    ddp.barrier(info)
    if not info.is_main:
        mu0, _ = load_or_compute_centroids(index, cfg, pattern, cfg["backend"], False, log)
    gen = torch.Generator().manual_seed(cfg["seed"])
    model = DejaVid(mu0, pattern, cfg["use_fixed_path"], cfg["w_one_init"], cfg["backend"], gen)
    model.to(device)
    # Under torchrun, DDP averages gradients across ranks; `model` stays the plain module
    # for snapshots, evaluation and checkpoints.
    trained = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index]
                                                         if device.type == "cuda" else None)
               if info.enabled else model)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    train_ds = TSEDataset(index, cfg["train_split"], cfg["in_memory"], progress, store_device)
    if (train_ds.on_device or eval_ds.on_device) and cfg["num_workers"]:
        log("store_on_device: batches are sliced in device memory; num_workers set to 0")
        cfg["num_workers"] = 0
    log(f"{len(train_ds)} train / {len(eval_ds)} {cfg['eval_split']} videos, "
        f"{index.num_classes} classes, F = {index.feature_size}, K = {cfg['num_timesteps']}, "
        f"{count_parameters(model)} parameters, device {device}, {info.world_size} process(es)")

    metrics = MetricsLog(run_dir)
    start_epoch, start_step, running, best, history = 0, 0, None, -1.0, []
    if ckpt is not None:
        restore_model(model, ckpt)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        start_epoch, start_step, best = ckpt["epoch"], ckpt["step"], ckpt["best_top1"]
        running = Running(**ckpt["running"]) if ckpt["running"] else None
        history = list(ckpt["history"])
        if info.is_main:
            metrics.rewrite(history)
        log(f"resuming at epoch {start_epoch + 1}, step {start_step}")

    def checkpoint(path, epoch, step, run):
        if not info.is_main:
            return
        save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, cfg=cfg,
                        label_values=index.label_values, epoch=epoch, step=step, running=run,
                        best_top1=best, history=history)

    with StopRequest() as stop:
        for epoch in range(start_epoch, cfg["num_epochs"]):
            t0 = time.time()
            if model.fixed_path and start_step == 0:
                model.snapshot()

            def on_stop(steps_done, run, epoch=epoch):
                checkpoint(run_dir / "last.pt", epoch, steps_done, run)
                log(f"stopped by {stop.requested} in epoch {epoch + 1} after {steps_done} steps; "
                    f"checkpoint written. Continue with: python train_dejavid.py --resume {run_dir}")

            running = train_one_epoch(trained, train_ds, optimizer, cfg, device, epoch, start_step,
                                      running, stop, on_stop, progress, info)
            if running is None:
                return 130
            start_step = 0
            scheduler.step()
            res = evaluate(model, eval_ds, cfg, device, progress, info=info)
            row = {"epoch": epoch + 1, "train_loss": running.loss_sum / running.count,
                   "train_top1": running.correct / running.count, "val_loss": res["loss"],
                   "val_top1": res["top1"], "val_top5": res["top5"],
                   "lr": optimizer.param_groups[0]["lr"], "seconds": time.time() - t0}
            running = None
            history.append(row)
            improved = row["val_top1"] > best
            best = max(best, row["val_top1"])
            # The checkpoint is the source of truth; metrics.jsonl follows it.
            checkpoint(run_dir / "last.pt", epoch + 1, 0, None)
            if improved:
                checkpoint(run_dir / "best.pt", epoch + 1, 0, None)
            if info.is_main:
                metrics.append(row)
            log(format_epoch(row, cfg["num_epochs"]))
            if ddp.any_flag(bool(stop.requested), info, device):
                log(f"stopped by {stop.requested} after epoch {epoch + 1}; continue with: "
                    f"python train_dejavid.py --resume {run_dir}")
                return 130
    log(f"done: best val top-1 {best:.4f}; checkpoints and metrics.jsonl in {run_dir}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
