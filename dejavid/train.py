"""Training DejaVid: centroid initialisation, the epoch loop, checkpoints and resume.

    from dejavid import fit
    from dejavid.settings import LoopSpec, TrainSettings
    result = fit(train_ds, eval_ds, TrainSettings(loop=LoopSpec(num_epochs=20, batch_size=32)))
    result.model            # the trained DejaVid layer; result.history: one row per epoch

``train_dejavid.py`` and ``reproduce.py`` call :func:`fit` with a run folder (checkpoints,
metrics.jsonl, Ctrl-C writes a checkpoint and resumes exactly); the estimator
(:class:`dejavid.DejaVidClassifier`) calls it on in-memory data without one.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from . import distributed as ddp
from .centroids import load_or_compute_centroids
from .checkpoint import restore_model, save_checkpoint
from .config import format_config
from .device import resolve_device
from .distributed import DistInfo
from .engine import Running, evaluate, train_one_epoch
from .metrics_log import MetricsLog, format_epoch
from .model import DejaVid, count_parameters
from .optim import build_optimizer, build_scheduler
from .rng import seed_everything, set_rng_state
from .settings import ModelSpec, TrainSettings
from .signals import StopRequest
from .timing import timer_from_env


@dataclass
class FitResult:
    """What :func:`fit` returns."""
    model: DejaVid                # the plain (not DDP-wrapped) module, on the training device
    history: list[dict]           # one metrics row per finished epoch (as in metrics.jsonl)
    best_top1: float              # best evaluation top-1; -1.0 without evaluation data
    label_values: list            # original label of each class index
    run_dir: Optional[Path] = None
    stopped: Optional[str] = None  # the signal (or DEJAVID_STOP_AFTER_STEPS) that stopped it


def model_from_checkpoint(ckpt: dict, spec: ModelSpec) -> DejaVid:
    """The trained layer of a checkpoint, set to align freely (as evaluation does)."""
    model = DejaVid(ckpt["model"]["mu"], spec.step_pattern, spec.use_fixed_path,
                    backend=spec.backend)
    model.fixed_path = False
    restore_model(model, ckpt)
    return model


def fit(train_ds, eval_ds=None, settings: TrainSettings = TrainSettings(), *,
        device: str | torch.device = "auto", mu_init: Optional[torch.Tensor] = None,
        cache_dir: Optional[str | Path] = None, run_dir: Optional[str | Path] = None,
        resume: Optional[dict] = None, config: Optional[dict] = None, progress: bool = True,
        log: Callable[[str], None] = print, info: DistInfo = DistInfo(),
        resume_hint: Optional[str] = None, timer=None) -> FitResult:
    """Train DejaVid on ``train_ds``, evaluating on ``eval_ds`` (if given) after each epoch.

    Datasets yield (x [T, F], label index, row) and carry ``index`` and ``rows``
    (:class:`dejavid.data.TSEDataset` from :func:`dejavid.load_index`, or
    :class:`dejavid.arrays.ArrayDataset` built from arrays).

    * Centroids: ``mu_init`` [C, K, F] if given, else DBA centroids computed from
      ``train_ds`` with ``settings.centroids`` and cached under ``cache_dir`` (no file
      when it is None).
    * ``run_dir``: checkpoints (``last.pt`` every epoch, ``best.pt``), ``metrics.jsonl``,
      and SIGINT/SIGTERM handling: the step finishes, a checkpoint is written and
      ``FitResult.stopped`` names the signal.  ``config`` is saved in the checkpoints
      (and logged); ``resume`` (a loaded checkpoint of the same run) continues it exactly.
      Without ``run_dir`` nothing is written and a Ctrl-C raises KeyboardInterrupt.
    * Seeds python's, numpy's and torch's global RNGs with ``settings.loop.seed`` first
      (torch's data loader draws from the global RNG).
    * ``info``/``device``: under torchrun pass :func:`dejavid.distributed.init`'s
      result; the model is wrapped in DistributedDataParallel for training.
    * ``timer``: a :class:`dejavid.timing.StageTimer` charged the centroids, then per epoch
      data, forward, backward, optimizer and eval (one ``timer.laps`` entry per epoch,
      also appended to ``timing.jsonl`` in ``run_dir``); default: one when the environment
      variable DEJAVID_TIMING=1, else none (no clock reads).
    """
    loop = settings.loop
    device = resolve_device(device) if not isinstance(device, torch.device) else device
    log_main = log if info.is_main else (lambda *a, **k: None)
    if loop.batch_size % info.world_size:
        raise ValueError(f"batch_size {loop.batch_size} is the global batch and must divide by "
                         f"the number of processes ({info.world_size})")
    index = train_ds.index
    if resume is not None and list(resume["label_values"]) != list(index.label_values):
        raise ValueError("the classes in the data differ from those the checkpoint was trained on")
    if run_dir is not None:
        run_dir = Path(run_dir)
        if resume is None and (run_dir / "last.pt").exists():
            raise ValueError(f"run folder {run_dir} already holds a run; continue it with "
                             f"--resume {run_dir} or pick another --run_name")
        if info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        if config is not None:
            log_main(f"run folder: {run_dir}\nconfig:\n{format_config(config)}")
    seed_everything(loop.seed)
    timer = timer if timer is not None else timer_from_env(device)
    hint = resume_hint or (f"python train_dejavid.py --resume {run_dir}" if run_dir else "")

    if mu_init is None:
        # Rank 0 computes the centroids once; the other ranks wait, then read its cache file.
        if info.is_main:
            with timer.stage("centroids"):
                mu_init, _ = load_or_compute_centroids(train_ds, settings.centroids, cache_dir,
                                                       progress, log_main)
        ddp.barrier(info)
        if not info.is_main:
            mu_init, _ = load_or_compute_centroids(train_ds, settings.centroids, cache_dir,
                                                   False, log_main)
    spec = settings.model
    gen = torch.Generator().manual_seed(loop.seed)
    model = DejaVid(mu_init, spec.step_pattern, spec.use_fixed_path, spec.w_one_init,
                    spec.backend, gen)
    model.to(device)
    # Under torchrun, DDP averages gradients across ranks; `model` stays the plain module
    # for snapshots, evaluation and checkpoints.
    trained = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index]
                                                         if device.type == "cuda" else None)
               if info.enabled else model)
    optimizer = build_optimizer(model, settings.optim)
    scheduler = build_scheduler(optimizer, settings.optim, loop.num_epochs)
    evaluated = (f"{len(eval_ds)} {settings.data.eval_split} videos" if eval_ds is not None
                 else "no evaluation data")
    log_main(f"{len(train_ds)} train / {evaluated}, "
             f"{index.num_classes} classes, F = {index.feature_size}, K = {model.mu.shape[1]}, "
             f"{count_parameters(model)} parameters, device {device}, "
             f"{info.world_size} process(es)")

    metrics = MetricsLog(run_dir) if run_dir is not None else None
    start_epoch, start_step, running, best, history = 0, 0, None, -1.0, []
    if resume is not None:
        restore_model(model, resume)
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        set_rng_state(resume["rng"])
        start_epoch, start_step, best = resume["epoch"], resume["step"], resume["best_top1"]
        running = Running(**resume["running"]) if resume["running"] else None
        history = list(resume["history"])
        if info.is_main and metrics is not None:
            metrics.rewrite(history)
        log_main(f"resuming at epoch {start_epoch + 1}, step {start_step}")

    def checkpoint(path, epoch, step, run):
        if run_dir is None or not info.is_main:
            return
        save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler,
                        config=config if config is not None else {},
                        label_values=index.label_values, epoch=epoch, step=step, running=run,
                        best_top1=best, history=history)

    def record_timing(**labels):
        row = timer.lap(**labels)
        if row and run_dir is not None and info.is_main:
            with open(run_dir / "timing.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")

    if timer.enabled:
        record_timing(before_epoch=start_epoch + 1)   # the centroids

    def result(stopped=None):
        return FitResult(model, history, best, list(index.label_values), run_dir, stopped)

    stop = StopRequest() if run_dir is not None else None
    with stop if stop is not None else contextlib.nullcontext():
        for epoch in range(start_epoch, loop.num_epochs):
            t0 = time.time()
            if model.fixed_path and start_step == 0:
                model.snapshot()

            def on_stop(steps_done, run, epoch=epoch):
                checkpoint(run_dir / "last.pt", epoch, steps_done, run)
                log_main(f"stopped by {stop.requested} in epoch {epoch + 1} after {steps_done} "
                         f"steps; checkpoint written. Continue with: {hint}")

            running = train_one_epoch(trained, train_ds, optimizer, loop=loop, device=device,
                                      epoch=epoch, start_step=start_step, running=running,
                                      stop=stop, on_stop=on_stop, progress=progress, info=info,
                                      timer=timer)
            if running is None:
                return result(stop.requested)
            start_step = 0
            scheduler.step()
            row = {"epoch": epoch + 1, "train_loss": running.loss_sum / running.count,
                   "train_top1": running.correct / running.count}
            if eval_ds is not None:
                with timer.stage("eval"):
                    res = evaluate(model, eval_ds, loop, device, progress, info=info)
                row.update(val_loss=res["loss"], val_top1=res["top1"], val_top5=res["top5"])
            row.update(lr=optimizer.param_groups[0]["lr"], seconds=time.time() - t0)
            if timer.enabled:
                record_timing(epoch=epoch + 1, epoch_seconds=round(row["seconds"], 6))
            running = None
            history.append(row)
            improved = eval_ds is not None and row["val_top1"] > best
            if eval_ds is not None:
                best = max(best, row["val_top1"])
            # The checkpoint is the source of truth; metrics.jsonl follows it.
            checkpoint(run_dir / "last.pt" if run_dir else None, epoch + 1, 0, None)
            if improved:
                checkpoint(run_dir / "best.pt" if run_dir else None, epoch + 1, 0, None)
            if info.is_main and metrics is not None:
                metrics.append(row)
            log_main(format_epoch(row, loop.num_epochs))
            if stop is not None and ddp.any_flag(bool(stop.requested), info, device):
                log_main(f"stopped by {stop.requested} after epoch {epoch + 1}; continue with: "
                         f"{hint}")
                return result(stop.requested)
    if run_dir is not None:
        log_main(f"done: best val top-1 {best:.4f}; checkpoints and metrics.jsonl in {run_dir}")
    return result()

