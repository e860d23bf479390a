"""Training DejaVid: centroid initialisation, the epoch loop, checkpoints and resume.

    from dejavid import fit
    from dejavid.config.settings import LoopSpec, TrainSettings
    result = fit(train_ds, eval_ds, TrainSettings(loop=LoopSpec(num_epochs=20, batch_size=32)))
    result.model            # the trained DejaVid layer; result.history: one row per epoch

``train_dejavid.py`` and ``reproduce.py`` call :func:`fit` with a run folder (checkpoints,
metrics.jsonl, Ctrl-C writes a checkpoint and resumes exactly); the estimator
(:class:`dejavid.DejaVidClassifier`) calls it on in-memory data without one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from . import distributed as ddp
from ..config.settings import ALL_SERIES
from ..model.centroids import flatten_prototypes, load_or_compute_centroids, sampled_rows
from .checkpoint import extraction_record, load_checkpoint, restore_model, save_checkpoint
from ..config.files import format_config
from ..device import resolve_device
from .distributed import DistInfo
from .engine import NonFiniteError, Running, calibrate_head, evaluate, train_one_epoch
from ..io import RunLock, append_line
from .metrics_log import MetricsLog, TensorBoardLog, format_epoch
from ..model.layer import DejaVid, count_parameters
from .optim import build_optimizer, build_scheduler
from .rng import seed_everything, set_rng_state
from ..config.settings import ModelSpec, TrainSettings
from .signals import StopRequest
from .timing import timer_from_env


# What makes a folder a run's: a new run refuses a folder holding any of them.
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl")


@dataclass
class FitResult:
    """What :func:`fit` returns."""
    model: DejaVid                # the plain (not DDP-wrapped) module, on the training device
    history: list[dict]           # one metrics row per finished epoch (as in metrics.jsonl)
    best_top1: float              # best evaluation top-1; -1.0 without evaluation data
    label_values: list            # original label of each class index
    run_dir: Optional[Path] = None
    stopped: Optional[str] = None  # the signal (or DEJAVID_STOP_AFTER_STEPS) that stopped it


def model_from_checkpoint(ckpt: dict, spec: ModelSpec, std_eps: float = 1e-6) -> DejaVid:
    """The trained layer of a checkpoint, set to align freely (as evaluation does)."""
    model = DejaVid(ckpt["model"]["mu"], spec.step_pattern, spec.use_fixed_path,
                    backend=spec.backend, logit_head=spec.logit_head, std_eps=std_eps,
                    band=spec.band, proto_class=(ckpt.get("pool") or {}).get("proto_class"),
                    proto_rows=(ckpt.get("pool") or {}).get("proto_rows"),
                    resample_inputs=spec.resample_inputs, open_ends=spec.open_ends)
    model.fixed_path = False
    restore_model(model, ckpt)
    return model


def check_best_checkpoint(run_dir: Path, best: float) -> None:
    """Refuse to continue a run whose ``best.pt`` is missing or older than the best value
    ``last.pt`` records: it would finish printing a best result without its weights."""
    if best < 0:
        return  # no evaluated epoch yet: no best.pt is due
    path = run_dir / "best.pt"
    found = load_checkpoint(path)["best_top1"] if path.is_file() else None
    if found is None or found < best:
        what = "is missing" if found is None else f"holds val top-1 {found:.4f}"
        raise ValueError(f"run folder {run_dir}: last.pt records a best val top-1 of {best:.4f} "
                         f"but best.pt {what}, so the best weights are lost; restore best.pt "
                         f"from a copy, or start a new run (another --run_name)")


def fit(train_ds, eval_ds=None, settings: TrainSettings = TrainSettings(), *,
        device: str | torch.device = "auto", mu_init: Optional[torch.Tensor] = None,
        cache_dir: Optional[str | Path] = None, run_dir: Optional[str | Path] = None,
        resume: Optional[dict] = None, config: Optional[dict] = None, progress: bool = True,
        log: Callable[[str], None] = print, info: DistInfo = DistInfo(),
        resume_hint: Optional[str] = None, allow_changed_data: bool = False,
        timer=None, tensorboard: Optional[str | Path] = None,
        proto_class: Optional[torch.Tensor] = None) -> FitResult:
    """Train DejaVid on ``train_ds``, evaluating on ``eval_ds`` (if given) after each epoch.

    Datasets yield (x [T, F], label index, row) and carry ``index`` and ``rows``
    (:class:`dejavid.data.dataset.TSEDataset` from :func:`dejavid.load_index`, or
    :class:`dejavid.data.arrays.ArrayDataset` built from arrays).

    * Centroids: ``mu_init`` [C, K, F] if given (or [P, K, F] prototypes of the classes
      ``proto_class`` [P]), else DBA centroids computed from ``train_ds`` with
      ``settings.centroids`` (``centroids_per_class`` prototypes per class) and cached
      under ``cache_dir`` (no file when it is None).
    * ``run_dir``: checkpoints (``last.pt`` every epoch, ``best.pt``), ``metrics.jsonl``,
      and SIGINT/SIGTERM handling: the step finishes, a checkpoint is written and
      ``FitResult.stopped`` names the signal.  The folder is locked for the run
      (:func:`open_run_dir`); a new run refuses a folder that holds another run's files.  ``config`` is saved in the checkpoints
      (and logged); ``resume`` (a loaded checkpoint of the same run) continues it exactly.
      A resume on data that differs from what the checkpoint records (ids, labels or
      contents of the training or evaluation videos) is refused with a ValueError naming
      what changed, unless ``allow_changed_data``.
      Without ``run_dir`` nothing is written and a Ctrl-C raises KeyboardInterrupt.
    * ``settings`` may hold 'auto' for K and the epoch count: they are derived from the
      training series' lengths (:meth:`dejavid.config.settings.TrainSettings.resolved`).
    * Seeds python's, numpy's and torch's global RNGs with ``settings.loop.seed`` first
      (torch's data loader draws from the global RNG).
    * A NaN or Inf loss or parameter raises :class:`dejavid.training.engine.NonFiniteError` (a
      ValueError); nothing from that epoch is written, the last good checkpoints stay.
    * ``info``/``device``: under torchrun pass :func:`dejavid.training.distributed.init`'s
      result; the model is wrapped in DistributedDataParallel for training.
    * ``timer``: a :class:`dejavid.training.timing.StageTimer` charged the centroids, then per epoch
      data, forward, backward, optimizer and eval (one ``timer.laps`` entry per epoch,
      also appended to ``timing.jsonl`` in ``run_dir``); default: one when the environment
      variable DEJAVID_TIMING=1, else none (no clock reads).
    * ``tensorboard``: a folder for the per-epoch metrics as TensorBoard scalars
      (:class:`dejavid.training.metrics_log.TensorBoardLog`; rank 0 only).
    """
    settings = settings.resolved(train_ds.index.lengths[train_ds.rows])   # 'auto' K, epochs
    loop = settings.loop
    device = resolve_device(device) if not isinstance(device, torch.device) else device
    if loop.batch_size % info.world_size:
        raise ValueError(f"batch_size {loop.batch_size} is the global batch and must divide by "
                         f"the number of processes ({info.world_size})")
    index = train_ds.index
    if resume is not None and list(resume["label_values"]) != list(index.label_values):
        raise ValueError("the classes in the data differ from those the checkpoint was trained on")
    if index.num_classes < 2:
        raise ValueError(f"the training data has {index.num_classes} class "
                         f"({index.label_values}); a classifier needs at least 2 classes with "
                         f"training videos")
    data = data_record(train_ds, eval_ds)
    if resume is not None:
        changed = data_changes(resume.get("data"), data, train_ds, eval_ds)
        if changed and not allow_changed_data:
            raise ValueError(f"the data changed since the checkpoint was written: {changed}. "
                             f"A resume on other data would not end as the original run would "
                             f"have; restore the data, or continue anyway with "
                             f"--allow-changed-data (allow_changed_data=True)")
        if changed and info.is_main:
            log(f"warning: continuing on changed data ({changed})")
    run_dir = Path(run_dir) if run_dir is not None else None
    lock = open_run_dir(run_dir, resume, info) if run_dir is not None else None
    try:
        return _fit(train_ds, eval_ds, settings, device, mu_init, cache_dir, run_dir, resume,
                    config, progress, log, info, resume_hint, data, timer, tensorboard,
                    proto_class)
    except BaseException as exc:
        if lock is not None and resume is None:
            _remove_if_unused(run_dir)   # (only while holding the lock: it may be another's)
        if isinstance(exc, NonFiniteError):
            raise NonFiniteError(_diverged_message(str(exc), run_dir, settings)) from None
        raise
    finally:
        if lock is not None:
            lock.release()


def open_run_dir(run_dir: Path, resume: Optional[dict] = None,
                 info: DistInfo = DistInfo()) -> Optional[RunLock]:
    """Create ``run_dir`` and lock it for this run (rank 0; every rank learns of a refusal).

    Refused (ValueError): a folder another live process holds (the message names it); for
    a new run, a folder that already holds any run file (a new run never writes over
    another run's checkpoints or mixes its metrics into theirs); for a ``resume``, a run
    whose best.pt is missing or behind (:func:`check_best_checkpoint`)."""
    lock, error = None, None
    if info.is_main:
        try:
            if run_dir.exists() and not run_dir.is_dir():
                raise ValueError(f"run folder {run_dir} exists and is not a folder; pick another "
                                 f"--run_name or output_dir")
            run_dir.mkdir(parents=True, exist_ok=True)
            lock = RunLock(run_dir).acquire()
            found = [f for f in RUN_FILES if (run_dir / f).exists()]
            if resume is None and found:
                raise ValueError(f"run folder {run_dir} already holds a run ({', '.join(found)}); "
                                 f"continue it with --resume {run_dir}, or pick another "
                                 f"--run_name (a new run never writes over another run's files)")
            if resume is not None:
                check_best_checkpoint(run_dir, resume["best_top1"])
        except ValueError as exc:
            if lock is not None:
                lock.release()
                lock = None
            error = exc
        except OSError as exc:
            error = ValueError(f"cannot create or lock run folder {run_dir}: "
                               f"{exc.strerror or exc}; pick a writable output_dir")
    ddp.agree(error, info)
    return lock


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little",
                          signed=True)


def data_record(train_ds, eval_ds=None) -> dict:
    """What a run trains and evaluates on, as checkpoints keep it: per split its name, the
    fingerprint (:meth:`dejavid.data.dataset.DataIndex.fingerprint`) and, per video, a 64-bit hash
    of its id and one of its label and contents (int64 tensors [N]: 16 bytes a video, so
    that a resume on changed data can say how many videos changed)."""
    out = {}
    for role, ds in (("train", train_ds), ("eval", eval_ds)):
        if ds is None:
            continue
        index, rows = ds.index, [int(k) for k in ds.rows]
        split = index.splits[rows[0]]
        out[role] = {
            "split": split, "fingerprint": index.fingerprint(split),
            "ids": torch.tensor([_hash64(repr(index.ids[k])) for k in rows], dtype=torch.int64),
            "contents": torch.tensor([_hash64(f"{index.label_values[index.labels[k]]!r}|"
                                              f"{index.digests[k]}") for k in rows],
                                     dtype=torch.int64),
        }
    return out


def data_changes(saved: Optional[dict], now: dict, train_ds, eval_ds=None) -> str:
    """'' when ``now`` (the :func:`data_record` of ``train_ds``/``eval_ds``) matches the
    ``saved`` one (or nothing was saved), else what changed: per split, the videos with
    other contents or labels, added, removed, and a few of their ids."""
    if not saved:
        return ""
    parts = []
    datasets = {"train": train_ds, "eval": eval_ds}
    for role, new in now.items():
        old = saved.get(role)
        if old is None or old["fingerprint"] == new["fingerprint"]:
            continue
        before = dict(zip(old["ids"].tolist(), old["contents"].tolist()))
        after = dict(zip(new["ids"].tolist(), new["contents"].tolist()))
        changed = sorted(h for h in after.keys() & before.keys() if after[h] != before[h])
        added = sorted(after.keys() - before.keys())
        removed = len(before.keys() - after.keys())
        ds, named = datasets[role], set(changed) | set(added)
        names = [repr(ds.index.ids[int(k)]) for h, k in zip(new["ids"].tolist(), ds.rows)
                 if h in named][:3]
        parts.append(f"split '{new['split']}' ({role}): {len(changed)} of {len(before)} videos "
                     f"have other contents or labels, {len(added)} added, {removed} removed"
                     + (f" (e.g. {', '.join(names)})" if names else ""))
    return "; ".join(parts)


def check_files_unchanged(train_ds, eval_ds=None, info: DistInfo = DistInfo()) -> None:
    """ValueError when a feature file the run reads (``store: false``, not ``in_memory``)
    changed since the data check: the run would mix old and new data while its checkpoints
    record the old data.  Checked at every epoch start and before every checkpoint.  A
    collective under torchrun: when any rank sees a change, every rank stops."""
    datasets = [ds for ds in (train_ds, eval_ds) if getattr(ds, "reads_files", False)]
    if not datasets:
        return   # (the same on every rank: it follows from the config)
    error = None
    for ds in datasets:
        changed = ds.changed_files()
        if changed and error is None:
            error = ValueError(
                f"{len(changed)} feature file(s) of split '{ds.split}' changed or were deleted "
                f"during the run (e.g. '{changed[0]}' under {ds.index.root}: missing, or other "
                f"size or modification time than at the data check); the run stops so as not "
                f"to train on mixed data, and nothing since the last checkpoint is saved. "
                f"Restore the files and continue with --resume, or start a new run on the new "
                f"files (with store: true, the default, a run reads the store it validated and "
                f"is not affected)")
    ddp.agree(error, info)


def _diverged_message(what: str, run_dir: Optional[Path], settings: TrainSettings) -> str:
    last = run_dir / "last.pt" if run_dir is not None else None
    kept = (f"The last good checkpoint, {last}, is kept (nothing from the failed epoch was "
            f"saved)" if last is not None and last.is_file()
            else "No checkpoint was written" if run_dir is not None else "")
    return (f"training stopped because it diverged at {what}. " + (kept + ". " if kept else "")
            + f"Usual causes: a learning rate too high (lr = {settings.optim.lr:g}), features "
            f"so large that the distances overflow float32 (sums beyond about 3e38; scale the "
            f"features), or feature files that changed during the run.")


def _remove_if_unused(run_dir: Path) -> None:
    """Remove a run folder that a failed or interrupted start left with nothing in it but
    its lock file."""
    try:
        if {p.name for p in run_dir.iterdir()} <= {RunLock.FILE}:
            (run_dir / RunLock.FILE).unlink(missing_ok=True)
            run_dir.rmdir()
    except OSError:
        pass  # another run took the folder meanwhile, or it is gone: leave it


def _fit(train_ds, eval_ds, settings: TrainSettings, device: torch.device, mu_init, cache_dir,
         run_dir: Optional[Path], resume: Optional[dict], config: Optional[dict], progress: bool,
         log, info: DistInfo, resume_hint: Optional[str], data: dict, timer,
         tensorboard=None, proto_class: Optional[torch.Tensor] = None) -> FitResult:
    """:func:`fit` after the checks, with the run folder (if any) locked."""
    loop = settings.loop
    index = train_ds.index
    log_main = log if info.is_main else (lambda *a, **k: None)
    if run_dir is not None and config is not None:
        log_main(f"run folder: {run_dir}\nconfig:\n{format_config(config)}")
    seed_everything(loop.seed)
    timer = timer if timer is not None else timer_from_env(device)
    hint = resume_hint or (f"python train_dejavid.py --resume {run_dir}" if run_dir else "")

    # Given centroids are one per class unless ``proto_class`` says otherwise.
    proto_rows = None
    if mu_init is None and resume is not None:
        # The checkpoint's parameters replace the initial ones: computing or loading
        # centroids here would be wasted work.
        mu_init = resume["model"]["mu"].clone()
        proto_class = (resume.get("pool") or {}).get("proto_class")
        proto_rows = (resume.get("pool") or {}).get("proto_rows")
    if mu_init is None:
        # Rank 0 computes the centroids once; the other ranks wait, then read its cache file
        # (or stop quietly when rank 0 could not compute them).
        error = None
        if info.is_main:
            try:
                with timer.stage("centroids"):
                    mu_init, _ = load_or_compute_centroids(train_ds, settings.centroids,
                                                           cache_dir, progress, log_main)
            except (ValueError, OSError) as exc:
                error = exc
        ddp.agree(error, info)
        if not info.is_main:
            mu_init, _ = load_or_compute_centroids(train_ds, settings.centroids, cache_dir,
                                                   False, log_main)
        # [C, K, F], or [C, M, K, F] with M prototypes per class: as [P, K, F] and their classes
        mu_init, proto_class = flatten_prototypes(mu_init)
        if settings.centroids.centroids_per_class == ALL_SERIES:
            proto_rows = sampled_rows(train_ds, settings.centroids)
    spec = settings.model
    gen = torch.Generator().manual_seed(loop.seed)
    model = DejaVid(mu_init, spec.step_pattern, spec.use_fixed_path, spec.w_one_init,
                    spec.backend, gen, logit_head=spec.logit_head, std_eps=loop.std_eps,
                    band=spec.band, proto_class=proto_class, proto_rows=proto_rows,
                    resample_inputs=spec.resample_inputs, open_ends=spec.open_ends)
    model.to(device)
    if resume is None:   # (a resume restores the learned head from the checkpoint)
        calibrate_head(model, train_ds, loop, device)
        if spec.logit_head == "temperature":
            log_main(f"logit head: -d / tau, tau = {model.head.log_temperature.exp().item():.4g} "
                     f"(calibrated on the initial training distances; learned)")
    # Under torchrun, DDP averages gradients across ranks; `model` stays the plain module
    # for snapshots, evaluation and checkpoints.
    trained = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index]
                                                         if device.type == "cuda" else None)
               if info.enabled else model)
    optimizer = build_optimizer(model, settings.optim)
    scheduler = build_scheduler(optimizer, settings.optim, loop.num_epochs)
    evaluated = (f"{len(eval_ds)} {settings.data.eval_split} videos" if eval_ds is not None
                 else "no evaluation data")
    if eval_ds is not None and getattr(eval_ds, "split", 0) == getattr(train_ds, "split", 1):
        evaluated += " (the training split itself: val top-1 measures fit, not generalisation)"
    log_main(f"{len(train_ds)} train / {evaluated}, "
             f"{index.num_classes} classes, F = {index.feature_size}, K = {model.mu.shape[1]}, "
             f"{count_parameters(model)} parameters, device {device}, "
             f"{info.world_size} process(es)")

    metrics = MetricsLog(run_dir) if run_dir is not None else None
    board = TensorBoardLog(tensorboard) if tensorboard and info.is_main else None
    extraction = extraction_record(config) if run_dir is not None and info.is_main else None
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
        if start_epoch >= loop.num_epochs and start_step == 0:
            best_text = f"; best val top-1 {best:.4f}" if best >= 0 else ""
            log_main(f"the run already finished: all {loop.num_epochs} epochs are done"
                     f"{best_text}; nothing to resume" + (f" (checkpoints in {run_dir})"
                                                          if run_dir is not None else ""))
            return FitResult(model, history, best, list(index.label_values), run_dir, None)
        log_main(f"resuming at epoch {start_epoch + 1}, step {start_step}")

    def checkpoint(path, epoch, step, run):
        if run_dir is None or not info.is_main:
            return
        save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler,
                        config=config if config is not None else {},
                        label_values=index.label_values, epoch=epoch, step=step, running=run,
                        best_top1=best, history=history, data=data,
                        feature_stats=getattr(index, "feature_stats", None),
                        extraction=extraction)

    def record_timing(**labels):
        row = timer.lap(**labels)
        if row and run_dir is not None and info.is_main:
            append_line(run_dir / "timing.jsonl", json.dumps(row))

    if timer.enabled:
        record_timing(before_epoch=start_epoch + 1)   # the centroids

    def result(stopped=None):
        return FitResult(model, history, best, list(index.label_values), run_dir, stopped)

    stop = StopRequest() if run_dir is not None else None
    with stop if stop is not None else contextlib.nullcontext():
        for epoch in range(start_epoch, loop.num_epochs):
            check_files_unchanged(train_ds, eval_ds, info)
            t0 = time.time()
            if model.fixed_path and start_step == 0:
                model.snapshot()

            def on_stop(steps_done, run, epoch=epoch):
                check_files_unchanged(train_ds, eval_ds, info)   # (every rank comes here)
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
            # The checkpoint is the source of truth; metrics.jsonl follows it.  best.pt goes
            # first: a crash between the two writes leaves this epoch's state in best.pt,
            # which load_checkpoint(run folder) then picks over the older last.pt (the
            # other order would record a best whose weights were never saved).
            # Before the checkpoints record this epoch's data as what the run trained on.
            check_files_unchanged(train_ds, eval_ds, info)
            if improved:
                checkpoint(run_dir / "best.pt" if run_dir else None, epoch + 1, 0, None)
            checkpoint(run_dir / "last.pt" if run_dir else None, epoch + 1, 0, None)
            if info.is_main and metrics is not None:
                metrics.append(row)
            if board is not None:
                board.append(row)
            log_main(format_epoch(row, loop.num_epochs))
            if stop is not None and ddp.any_flag(bool(stop.requested), info, device):
                log_main(f"stopped by {stop.requested} after epoch {epoch + 1}; continue with: "
                         f"{hint}")
                return result(stop.requested)
    if run_dir is not None:
        log_main(f"done: best val top-1 {best:.4f}; checkpoints and metrics.jsonl in {run_dir}")
    return result()

