"""The extraction run: list -> check -> decode (DataLoader workers) -> encode (clips of
several videos per call) -> write, resumable and shardable.

* **Checks first.** Duplicate ids, labels outside the class list, ids that cannot be
  file names and listed-but-missing files become failures before any decoding; an
  output folder written with other settings is an error before any work.
* **Resumable.** A video whose tensor file exists is skipped (``overwrite`` redoes it);
  files are renamed into place whole, so a run killed at any point continues with the
  next call and ends with the same files.  Every encoder call has exactly
  ``batch_clips`` rows (the last padded with black clips), so a video's features do
  not depend on which videos shared its batches: a resumed, re-sharded or 2-rank run
  writes the same bits as one uninterrupted run.
* **Sharded.** Under torchrun, rank r takes every world-size-th video still to do; the
  ranks meet at a barrier and rank 0 writes the pickles, ``failures.csv`` and the config.
* **Bad videos** are written to ``failures.csv`` (id, path, reason), left out of the
  pickles and counted; :func:`extract` returns 3 when any failed, else 0.
"""
from __future__ import annotations

import glob
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

from .decode import VideoError, decode_clips
from .encoders import Encoder, build_encoder, centre_crop
from .sampling import Sampling
from .sources import Listing, VideoItem
from .writer import (DTYPES, FEATS, FORMAT, bad_id, check_settings, feature_name,
                     write_dataset, write_failures, write_features, write_json)

EXIT_OK, EXIT_SOME_FAILED = 0, 3


@dataclass
class Options:
    """How to run (what a run writes is :func:`run_settings`)."""
    out: Path
    dtype: str = "float32"
    append_logits: Optional[bool] = None      # None: when the encoder has a classifier
    batch_clips: int = 32
    workers: int = 2
    overwrite: bool = False
    progress: bool = True
    name: str = ""

    def check(self) -> "Options":
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype {self.dtype!r}: use float16 or float32")
        if self.batch_clips < 1:
            raise ValueError(f"--batch-clips {self.batch_clips} must be at least 1")
        if self.workers < 0:
            raise ValueError(f"--workers {self.workers} must be 0 or more")
        return self


@dataclass
class Ranks:
    """This process's place in a torchrun job and the barrier of all its processes."""
    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = lambda: None


def run_settings(encoder: Encoder, sampling: Sampling, opts: Options, append: bool) -> dict:
    """What makes a folder's tensor files what they are (extraction.json)."""
    return {"format": FORMAT, "encoder": encoder.settings, "sampling": asdict(sampling),
            "dtype": opts.dtype, "append_logits": append}


def rebuild(out: Path) -> tuple[Encoder, Sampling, dict]:
    """``(encoder, sampling, settings)`` of the extraction written to folder ``out``, from its
    extraction.json: new videos encoded with them get the features of that extraction
    (a random-init encoder is rebuilt from its seed, a checkpoint from its id or folder)."""
    path = Path(out) / "extraction.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; give a folder written by extract_tse.py")
    settings = json.loads(path.read_text())
    return (*rebuild_from(settings), settings)


def rebuild_from(settings: dict) -> tuple[Encoder, Sampling]:
    """``(encoder, sampling)`` from the contents of an extraction.json (also what a
    checkpoint trained on such features carries)."""
    e, pre = settings["encoder"], settings["encoder"]["preprocess"]
    encoder = build_encoder(e["spec"], e["random_init"], e["seed"] or 0,
                            e.get("trust_remote_code", False), e["overrides"],
                            clip_len=pre["clip_len"], crop=pre["crop"])
    return encoder, Sampling(**settings["sampling"]).check()


# ---------------------------------------------------------------- checks before decoding
def precheck(listing: Listing) -> tuple[list[VideoItem], list[tuple[str, str, str]]]:
    """``(videos to extract, failures)``: duplicate ids (the first listing is kept),
    unknown labels, ids that are no file names and missing files fail here."""
    known, seen = set(listing.classes), {}
    good, failed = [], []
    for it in listing.items:
        reason = None
        if it.vid in seen:
            reason = f"duplicate id (also listed as {seen[it.vid]})"
        elif bad_id(it.vid):
            reason = bad_id(it.vid)
        elif it.label not in known:
            reason = f"unknown label {it.label!r} (not one of the {len(known)} classes)"
        elif not os.path.isfile(it.path):
            reason = "missing: no such file"
        seen.setdefault(it.vid, it.path)
        if reason:
            failed.append((it.vid, it.path, reason))
        else:
            good.append(it)
    return good, failed


# ---------------------------------------------------------------- decode workers
class DecodeJobs(torch.utils.data.Dataset):
    """Item k: ``(k, uint8 clips [T, clip_len, crop, crop, 3] or None, padded, reason)``;
    decoding, resizing, sampling and cropping all happen here, in the worker (it holds
    plain numbers, never the model, so it is cheap to send to spawned workers too)."""

    def __init__(self, items: list[VideoItem], sampling: Sampling, resize: int, crop: int):
        self.items, self.sampling, self.resize, self.crop = items, sampling, resize, crop

    def __len__(self):
        return len(self.items)

    def __getitem__(self, k):
        try:
            clips, padded = decode_clips(self.items[k].path, self.sampling, self.resize)
        except VideoError as exc:
            return k, None, False, str(exc)
        return k, torch.from_numpy(np.ascontiguousarray(centre_crop(clips, self.crop))), padded, None


def _one(x):
    return x


def _worker_init(_):
    torch.set_num_threads(1)


# ---------------------------------------------------------------- batching across videos
class ClipBatcher:
    """Collects clips of several videos into encoder calls of exactly ``size`` rows and
    hands back each video's ``(emb [T, D], logits [T, C] or None)`` once all its clips
    are encoded."""

    def __init__(self, encoder: Encoder, size: int):
        self.encoder, self.size = encoder, size
        self.queue: list[tuple[object, torch.Tensor]] = []    # (key, clips not yet encoded)
        self.queued = 0
        self.parts: dict[object, list] = {}
        self.left: dict[object, int] = {}
        self.clips_done = 0

    def add(self, key, clips: torch.Tensor) -> list:
        self.queue.append((key, clips))
        self.parts[key], self.left[key] = [], len(clips)
        self.queued += len(clips)
        done = []
        while self.queued >= self.size:
            done += self._call()
        return done

    def finish(self) -> list:
        done = []
        while self.queued:
            done += self._call()
        return done

    def _call(self) -> list:
        rows, owners, need = [], [], self.size
        while need and self.queue:
            key, clips = self.queue[0]
            take = clips[:need]
            rows.append(take)
            owners.append((key, len(take)))
            need -= len(take)
            if len(take) == len(clips):
                self.queue.pop(0)
            else:
                self.queue[0] = (key, clips[len(take):])
        n = self.size - need
        self.queued -= n
        if need:                                   # the last call: pad with black clips
            rows.append(torch.zeros((need,) + rows[0].shape[1:], dtype=rows[0].dtype))
        emb, logits = self.encoder(torch.cat(rows))
        self.clips_done += n
        done, at = [], 0
        for key, m in owners:
            self.parts[key].append((emb[at:at + m].cpu(), None if logits is None else logits[at:at + m].cpu()))
            at += m
            self.left[key] -= m
            if not self.left[key]:
                parts = self.parts.pop(key)
                del self.left[key]
                e = torch.cat([p[0] for p in parts])
                lg = None if parts[0][1] is None else torch.cat([p[1] for p in parts])
                done.append((key, e, lg))
        return done


# ---------------------------------------------------------------- the run
def _remove_stale_temporaries(out: Path) -> int:
    """Temporary files a killed run left (``.<name>.*.tmp`` beside the tensors and the
    pickles; not in ``cache/``, where a training run may be building the store)."""
    stale = glob.glob(str(out / FEATS / "**" / ".*.tmp"), recursive=True) + glob.glob(str(out / ".*.tmp"))
    for path in stale:
        os.unlink(path)
    return len(stale)


def extract(listing: Listing, encoder: Encoder, sampling: Sampling, opts: Options,
            ranks: Ranks = Ranks(), log=print) -> int:
    """Extract every listed video into ``opts.out``; returns :data:`EXIT_OK` or
    :data:`EXIT_SOME_FAILED` (see the module docstring)."""
    out = Path(opts.out)
    d, c = encoder.dims()
    append = (c > 0) if opts.append_logits is None else opts.append_logits
    if append and not c:
        raise ValueError(f"--append-logits: encoder {encoder.settings['spec']} has no classifier")
    settings = run_settings(encoder, sampling, opts, append)
    check_settings(out, settings, opts.overwrite)
    good, failed = precheck(listing)
    if encoder.settings["random_init"]:
        log(f"WARNING: encoder {encoder.settings['spec']} has RANDOM weights (--random-init): "
            f"its features carry no learned meaning; for tests and demos only")
    if ranks.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        stale = _remove_stale_temporaries(out)
        if stale:
            log(f"removed {stale} temporary file(s) of an interrupted run")
        write_json({**settings, "feature_size": d + (c if append else 0)}, out / "extraction.json")
    ranks.barrier()
    todo = [it for it in good if opts.overwrite or not (out / feature_name(it.vid)).is_file()]
    ranks.barrier()                                # every rank has its list before any writes
    mine = todo[ranks.rank::ranks.world]
    if ranks.rank == 0:
        log(f"{len(listing.items)} listed, {len(good) - len(todo)} already written, "
            f"{len(todo)} to extract ({len(mine)} on this rank of {ranks.world}), "
            f"{len(failed)} failed the checks; encoder {encoder.settings['spec']}: D = {d}, "
            f"C = {c}, F = {d + (c if append else 0)}")
    failed_here, padded = _extract_videos(mine, encoder, sampling, opts, append, out)
    _save_rank_failures(out, ranks.rank, failed_here, padded)
    ranks.barrier()
    if ranks.rank != 0:
        return EXIT_OK
    failed_runs, padded = _merge_rank_failures(out, ranks.world)
    failed += failed_runs
    bad = {f[0] for f in failed_runs}     # (a duplicate's id is the kept first listing's)
    label_id = {name: n for n, name in enumerate(listing.classes)}
    written = {it.vid: (it.split, label_id[it.label]) for it in good
               if it.vid not in bad and (out / feature_name(it.vid)).is_file()}
    write_failures(failed, out / "failures.csv")
    if not written:
        log(f"no video was written; see {out / 'failures.csv'}")
        return EXIT_SOME_FAILED
    cfg = write_dataset(out, written, listing.classes, d + (c if append else 0), c if append else 0,
                        encoder.settings["random_init"], opts.name or out.name)
    _summary(log, written, failed, padded, out)
    log(f"next: python train_dejavid.py --config {cfg}")
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _extract_videos(items, encoder, sampling, opts, append, out):
    """Decode, encode and write ``items``; ``(failures, number of padded videos)``."""
    failed, padded = [], 0
    if not items:
        return failed, padded
    jobs = DecodeJobs(items, sampling, encoder.pre.resize, encoder.pre.crop)
    loader = torch.utils.data.DataLoader(jobs, batch_size=None, shuffle=False,
                                         num_workers=opts.workers, collate_fn=_one,
                                         worker_init_fn=_worker_init if opts.workers else None,
                                         pin_memory=encoder.device.type == "cuda")
    batcher = ClipBatcher(encoder, opts.batch_clips)
    bar = tqdm(total=len(items), unit="video", disable=not opts.progress, dynamic_ncols=True)
    t0 = time.perf_counter()

    def write(done):
        for k, emb, logits in done:
            write_features(out, items[k].vid, emb, logits if append else None, opts.dtype)
            bar.update(1)
        bar.set_postfix_str(f"{batcher.clips_done / max(time.perf_counter() - t0, 1e-9):.1f} clips/s")

    for k, clips, pad, reason in loader:
        if reason is not None:
            failed.append((items[k].vid, items[k].path, reason))
            stale = out / feature_name(items[k].vid)
            if stale.is_file():                    # --overwrite of a video that now fails
                stale.unlink()
            bar.update(1)
            continue
        padded += pad
        write(batcher.add(k, clips))
    write(batcher.finish())
    bar.close()
    return failed, padded


def _save_rank_failures(out: Path, rank: int, failed, padded: int) -> None:
    write_json({"failed": failed, "padded": padded}, out / f".failures-rank{rank}.json")


def _merge_rank_failures(out: Path, world: int):
    failed, padded = [], 0
    for r in range(world):
        path = out / f".failures-rank{r}.json"
        part = json.loads(path.read_text())
        failed += [tuple(f) for f in part["failed"]]
        padded += part["padded"]
        path.unlink()
    return failed, padded


def _summary(log, written, failed, padded, out) -> None:
    splits = Counter(s for s, _ in written.values())
    log(f"written: {len(written)} videos ({', '.join(f'{n} {s}' for s, n in sorted(splits.items()))})"
        f"; padded (shorter than one clip, last frame repeated): {padded} of those extracted now")
    if failed:
        kinds = Counter(reason.split(":")[0].split(" (")[0] for _, _, reason in failed)
        log(f"FAILED: {len(failed)} videos ({', '.join(f'{n} {k}' for k, n in kinds.most_common())}); "
            f"each with its reason in {out / 'failures.csv'}")


__all__ = ["Options", "Ranks", "extract", "precheck", "rebuild", "rebuild_from", "EXIT_OK", "EXIT_SOME_FAILED"]
