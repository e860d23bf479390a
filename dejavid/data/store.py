"""The packed feature store: every split's videos in one memory-mapped array (issue #17).

The per-video ``torch.save`` files stay the input.  The first run reads and checks
each file once (with the checks of :func:`dejavid.data.dataset.check_videos`) and writes,
per split, under ``cache_dir/store_<key>/``::

    <split>.data        raw [N_steps, F] array (float32 | float16 | bfloat16 as uint16 bits),
                        every step of every video, np.memmap-able
    <split>.index.npz   starts/lengths [n] (rows of .data), content digests [n, 16],
                        ids (repr) and labels [n], and the manifest: size and mtime_ns
                        of each source file
    <split>.meta.json   written last: the "complete" marker (format version, dtype,
                        signature of the split's ids/labels/file names, F, counts)

``key`` hashes the four data paths and ``store_dtype``; the per-split signature and
the manifest (``os.stat`` only, no file is opened) decide at every start whether a
split is current.  A stale, incomplete or other-version split is rebuilt whole with
a message saying why; the other splits are kept.  Builds run under an exclusive
``fcntl.flock`` on ``lock``, so concurrent first runs build once; they are chunked
(``<split>.progress.jsonl`` records each fsynced chunk) and resume after an
interruption.

Reading a video is a slice of the memory map converted to float32: no file open,
no unpickling.  Each complete split's data file is opened once, when it is validated,
and that descriptor is held (and inherited by forked DataLoader workers): a rebuild by
another process replaces the file (``os.replace``, a new inode) and never reaches a
running job, which goes on reading the data it validated.  A process that gets the
store by pickling (spawned workers) reopens the file by path and refuses one that is
no longer the validated file.  The index is checked against the data file's size
(every video's rows inside it) before anything is read; any inconsistency rebuilds.
This module knows nothing of how files are checked: the caller passes a
``check(split, positions, first_f, problems)`` generator (dataset.py).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from tqdm import tqdm

from ..io import append_line, atomic_path, atomic_write_text, lock_file

FORMAT_VERSION = 1
STORE_DTYPES = ("float32", "float16", "bfloat16")
_NUMPY_DTYPE = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}
# Videos per progress record: an interrupted build loses at most this many videos of
# work, and a record (positions and digests, ~60 bytes per video) stays small.
CHUNK_VIDEOS = 1024
# store_on_device copies a split only if it takes at most this share of the free device
# memory, leaving the rest for the model, the alignment buffers and the batches.
DEVICE_SHARE = 0.75
FLOAT16_MAX = float(np.finfo(np.float16).max)

# check(split, positions, first_f, problems) -> iterator of (position, x [T, F] float32, was_half)
CheckFn = Callable[[str, list, Optional[int], object], Iterator[tuple]]


@dataclass
class SplitSource:
    """What the user's maps say about one split, in the index's row order."""
    ids: list
    files: list[str]
    labels: list


@dataclass
class BuildResult:
    """:func:`open_or_build`'s answer: the store, or the problems that prevent it."""
    store: Optional["FeatureStore"]
    problems: list[str]
    total_problems: int
    n_half: int


class _Sink:
    """Collects problem messages (a ``problems.add`` target for the check function)."""

    def __init__(self, keep: int = 20):
        self.items: list[str] = []
        self.total = 0
        self.keep = keep

    def add(self, msg: str) -> None:
        self.total += 1
        if len(self.items) < self.keep:
            self.items.append(msg)


def store_dir(cache_dir: str | Path, paths: dict, dtype: str) -> Path:
    """The store's folder: a hash of the absolute data paths, the dtype and the format version."""
    key = {"version": FORMAT_VERSION, "dtype": dtype,
           **{k: str(Path(v).resolve()) for k, v in sorted(paths.items())}}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(cache_dir) / f"store_{digest}"


def entries_signature(src: SplitSource) -> str:
    """Hash of the split's ids, labels and file names (what the maps decide)."""
    h = hashlib.sha256()
    for vid, label, fname in zip(src.ids, src.labels, src.files):
        # (surrogateescape: a file name holding bytes that are not UTF-8, as os.listdir
        # returns it, hashes as those bytes)
        h.update(f"{vid!r}|{label!r}|{fname}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def manifest(root: Path, files: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique file names in first-use order, sizes, mtime_ns): os.stat only, never an open.
    A missing file has size and mtime -1."""
    names = list(dict.fromkeys(files))
    sizes = np.empty(len(names), dtype=np.int64)
    mtimes = np.empty(len(names), dtype=np.int64)
    for n, fname in enumerate(names):
        try:
            st = os.stat(root / fname)
            sizes[n], mtimes[n] = st.st_size, st.st_mtime_ns
        except OSError:
            sizes[n] = mtimes[n] = -1
    return np.array(names, dtype=str), sizes, mtimes


def _describe_change(old, new) -> str:
    """'2 file(s) changed (e.g. 'a.pt'), 1 added, 0 removed' between two manifests."""
    old_map = dict(zip(old[0].tolist(), zip(old[1].tolist(), old[2].tolist())))
    new_map = dict(zip(new[0].tolist(), zip(new[1].tolist(), new[2].tolist())))
    changed = [f for f in new_map if f in old_map and old_map[f] != new_map[f]]
    added = [f for f in new_map if f not in old_map]
    removed = [f for f in old_map if f not in new_map]
    parts = []
    for what, names in (("changed", changed), ("added", added), ("removed", removed)):
        if names:
            parts.append(f"{len(names)} file(s) {what} (e.g. '{names[0]}')")
    return ", ".join(parts) or "the source files differ"


def to_store_dtype(x: torch.Tensor, dtype: str) -> tuple[np.ndarray, float]:
    """float32 [T, F] -> (array in the store's dtype, largest absolute conversion error)."""
    if dtype == "float32":
        return x.numpy(), 0.0
    if dtype == "float16":
        with np.errstate(over="ignore"):  # values beyond float16's range: reported by the caller
            h = x.numpy().astype(np.float16)
        back = torch.from_numpy(h.astype(np.float32))
    else:
        b = x.to(torch.bfloat16)
        h = b.view(torch.int16).numpy().view(np.uint16)
        back = b.to(torch.float32)
    return h, float((back - x).abs().max()) if x.numel() else 0.0


def from_store_dtype(a, dtype: str) -> torch.Tensor:
    """A slice of the store (numpy array or torch tensor, any device) -> float32 tensor."""
    if isinstance(a, np.ndarray):
        a = torch.from_numpy(a.view(np.int16) if dtype == "bfloat16" else a)
    if dtype == "bfloat16" and a.dtype == torch.int16:
        a = a.view(torch.bfloat16)
    # Even a no-op .to() costs microseconds of dispatch, per video.
    return a if a.dtype == torch.float32 else a.to(torch.float32)


def _write(fh, arr: np.ndarray) -> None:
    """Append one video's steps to the split's data file (one place, so tests can fail it)."""
    fh.write(memoryview(np.ascontiguousarray(arr)).cast("B"))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _disk_error(exc: OSError, where: Path, need: int) -> ValueError:
    """A clear message for a full disk or a folder we may not write."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f"{shutil.disk_usage(where).free / 2**30:.2f} GiB free"
        except OSError:
            free = "free space unknown"
        return ValueError(
            f"no space left on the device while writing the feature store {where} "
            f"(it needs about {need / 2**30:.2f} GiB; {free}). Free some space, point "
            f"cache_dir at a larger disk, use store_dtype float16 (half the size), or set "
            f"store: false to read the files directly. The unfinished part is kept and a "
            f"later run continues it; it is never used before it is complete")
    return ValueError(f"cannot write the feature store in {where} ({exc.strerror or exc}); make "
                      f"cache_dir writable, point cache_dir at another folder, or set store: false")


# --------------------------------------------------------------------------- reading

@dataclass
class SplitStore:
    """One complete split: where each video's steps are and how they are stored."""
    name: str
    data_path: Path
    dtype: str
    feature_size: int
    n_steps: int
    starts: np.ndarray     # [n] int64 first row of each video in the data array
    lengths: np.ndarray    # [n] int64 T of each video
    digests: list          # [n] content hash (hex) of each video's float32 source
    ids: np.ndarray        # [n] repr of each video id
    labels: np.ndarray     # [n] label as in id2labels
    meta: dict
    # The data file as validated: held open (None after pickling) and its identity
    # (st_dev, st_ino, size, mtime_ns), which a reopen by path must match.
    handle: Optional[object] = None
    identity: tuple = ()


class FeatureStore:
    """Read access to a complete store: ``video(split, pos)`` -> x [T, F] float32.

    The data arrays are opened lazily (copy-on-write memory maps, so a slice can be
    handed to torch without a copy or a read-only warning) and dropped when the object
    is pickled into a DataLoader worker, which opens its own.
    """

    def __init__(self, path: Path, dtype: str, splits: dict[str, SplitStore]):
        self.path = path
        self.dtype = dtype
        self.splits = splits
        self._maps: dict[str, np.ndarray] = {}
        self._views: dict[str, torch.Tensor] = {}
        self._device: dict[str, torch.Tensor] = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_maps"], state["_views"] = {}, {}
        state["splits"] = {k: replace(s, handle=None) for k, s in self.splits.items()}
        if self._device:
            raise ValueError("a feature store held on the GPU (store_on_device) cannot be "
                             "sent to DataLoader workers; set num_workers: 0")
        return state

    def _handle(self, s: SplitStore):
        """The split's data file as validated: the held descriptor, or (in a process that
        got the store by pickling) the file reopened by path, refused unless it is the same
        file."""
        if s.handle is not None:
            return s.handle
        fh = open(s.data_path, "rb")
        if _identity(os.fstat(fh.fileno())) != s.identity:
            fh.close()
            raise ValueError(f"feature store file {s.data_path} was rebuilt or replaced by "
                             f"another process while this run was using it; this run stops "
                             f"rather than mix old and new data. Start the run again (it "
                             f"validates and uses the new store)")
        s.handle = fh
        return fh

    def array(self, split: str) -> np.ndarray:
        """The split's whole [N_steps, F] memory map (in the store's dtype)."""
        mm = self._maps.get(split)
        if mm is None:
            s = self.splits[split]
            if s.n_steps == 0:
                mm = np.empty((0, s.feature_size), dtype=_NUMPY_DTYPE[self.dtype])
            else:
                # A map of the held descriptor, never of the path (np.memmap only seeks the
                # file to learn its size, then maps it at an explicit offset).
                mm = np.memmap(self._handle(s), dtype=_NUMPY_DTYPE[self.dtype], mode="c",
                               shape=(s.n_steps, s.feature_size))
            self._maps[split] = mm
        return mm

    def _view(self, split: str) -> torch.Tensor:
        """The whole map as one torch tensor (int16 bits for bfloat16): slicing a tensor
        costs a fraction of slicing an np.memmap, which matters at ~13 videos/ms."""
        v = self._views.get(split)
        if v is None:
            a = np.asarray(self.array(split))
            v = self._views[split] = torch.from_numpy(a.view(np.int16) if self.dtype == "bfloat16"
                                                      else a)
        return v

    def video(self, split: str, pos: int, copy: bool = False) -> torch.Tensor:
        """Steps of the ``pos``-th video of ``split`` as float32 [T, F]; a view of the map
        for a float32 store unless ``copy``."""
        s = self.splits[split]
        a = int(s.starts[pos])
        b = a + int(s.lengths[pos])
        src = self._device.get(split)
        x = from_store_dtype((src if src is not None else self._view(split))[a:b], self.dtype)
        return x.clone() if copy and self.dtype == "float32" else x

    def on_device(self, split: str) -> Optional[torch.Tensor]:
        """The split's rows in device memory (store dtype; int16 bits for bfloat16) after
        :meth:`to_device` succeeded, else None."""
        return self._device.get(split)

    def nbytes(self, split: str) -> int:
        s = self.splits[split]
        return s.n_steps * s.feature_size * np.dtype(_NUMPY_DTYPE[self.dtype]).itemsize

    def to_device(self, split: str, device, log=print,
                  free_bytes: Optional[Callable[[torch.device], int]] = None) -> bool:
        """Copy the whole split to ``device`` once if it fits (True), else say why and keep
        reading it from the memory map (False)."""
        device = torch.device(device)
        need = self.nbytes(split)
        free = (free_bytes or device_free_bytes)(device)
        if need > DEVICE_SHARE * free:
            log(f"store_on_device: split '{split}' needs {need / 2**30:.2f} GiB, more than "
                f"{DEVICE_SHARE:.0%} of the {free / 2**30:.2f} GiB free on {device}; reading it "
                f"from the memory-mapped store instead")
            return False
        self._device[split] = self._view(split).to(device)
        log(f"store_on_device: split '{split}' ({need / 2**30:.2f} GiB, {self.dtype}) is on {device}")
        return True


def device_free_bytes(device: torch.device) -> int:
    """Free memory of ``device``: the GPU's, or the host's available RAM for 'cpu'."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


# --------------------------------------------------------------------------- state on disk

def _names(d: Path, split: str) -> dict[str, Path]:
    return {"data": d / f"{split}.data", "partial": d / f"{split}.data.partial",
            "index": d / f"{split}.index.npz", "meta": d / f"{split}.meta.json",
            "progress": d / f"{split}.progress.jsonl"}


def _read_json(path: Path) -> Optional[dict]:
    """The JSON object in ``path``, or None when it is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _identity(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


_META_INTS = ("feature_size", "n_steps", "n_videos", "n_half")
_INDEX_KEYS = ("starts", "lengths", "digests", "ids", "labels", "files", "sizes", "mtimes")


def _index_problem(meta: dict, arrays: dict, count: int) -> str:
    """'' when the metadata and index arrays describe ``count`` videos whose rows all lie
    inside the data array, else what is wrong (a damaged or foreign store)."""
    if not all(isinstance(meta.get(k), int) and not isinstance(meta.get(k), bool)
               and meta[k] >= 0 for k in _META_INTS):
        return "its metadata is damaged"
    missing = [k for k in _INDEX_KEYS if k not in arrays]
    if missing:
        return f"its index file lacks {', '.join(missing)}"
    starts, lengths, digests = arrays["starts"], arrays["lengths"], arrays["digests"]
    if not (starts.dtype == lengths.dtype == np.int64 and digests.dtype == np.uint8
            and starts.shape == lengths.shape == (count,) and digests.shape == (count, 16)
            and len(arrays["ids"]) == count and meta["n_videos"] == count):
        return "its index file does not describe the split's videos"
    if count and (meta["feature_size"] < 1 or (lengths < 1).any() or (starts < 0).any()
                  or (starts + lengths > meta["n_steps"]).any()):
        return "its index file points outside the data file"
    return ""


def _split_state(d: Path, split: str, src: SplitSource, dtype: str, feature_size: int,
                 current) -> tuple[Optional[SplitStore], str]:
    """(the complete split if it is current, else None with the reason)."""
    n = _names(d, split)
    meta = _read_json(n["meta"])
    if meta is None:
        if n["progress"].exists():
            return None, "its build was interrupted or stopped by errors"
        return None, "it is not built yet"
    if meta.get("format_version") != FORMAT_VERSION:
        return None, (f"it was written in store format version {meta.get('format_version')} "
                      f"and this dejavid reads version {FORMAT_VERSION}")
    if meta.get("dtype") != dtype:
        return None, f"it holds {meta.get('dtype')}, not store_dtype {dtype}"
    if meta.get("signature") != entries_signature(src):
        return None, "the split's video ids, labels or file names changed"
    try:
        with np.load(n["index"], allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception:  # missing, cut off (BadZipFile), not an .npz
        return None, "its index file is missing or unreadable"
    problem = _index_problem(meta, arrays, len(src.ids))
    if problem:
        return None, problem
    old = (arrays["files"], arrays["sizes"], arrays["mtimes"])
    if not (np.array_equal(old[0], current[0]) and np.array_equal(old[1], current[1])
            and np.array_equal(old[2], current[2])):
        return None, _describe_change(old, current)
    if feature_size and meta["feature_size"] != feature_size:
        return None, (f"config feature_size {feature_size} differs from the stored "
                      f"F = {meta['feature_size']}; re-checking the files")
    itemsize = np.dtype(_NUMPY_DTYPE[dtype]).itemsize
    want = meta["n_steps"] * meta["feature_size"] * itemsize
    try:
        fh = open(n["data"], "rb")   # held for the run: see the module doc
    except OSError:
        return None, "its data file is missing or unreadable"
    st = os.fstat(fh.fileno())
    if st.st_size != want:
        fh.close()
        return None, f"its data file holds {st.st_size} bytes instead of {want}"
    return SplitStore(split, n["data"], dtype, meta["feature_size"], meta["n_steps"],
                      arrays["starts"], arrays["lengths"],
                      [bytes(r).hex() for r in arrays["digests"]], arrays["ids"],
                      arrays["labels"], meta, fh, _identity(st)), ""


# --------------------------------------------------------------------------- building

def _file_order(src: SplitSource) -> list[int]:
    """Positions grouped by file (first use), so a multi-video file is read once per chunk."""
    by_file: dict[str, list[int]] = {}
    for p, fname in enumerate(src.files):
        by_file.setdefault(fname, []).append(p)
    return [p for ps in by_file.values() for p in ps]


def _read_progress(path: Path, header: dict) -> list[dict]:
    """The chunk records of an interrupted build with this exact header (else [])."""
    if not path.exists():
        return []
    records = []
    for n, line in enumerate(path.read_text().splitlines()):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut by a crash: the chunk after the last whole line is redone
        if n == 0 and rec != header:
            return []
        if n > 0:
            records.append(rec)
    return records


def _build_split(d: Path, split: str, src: SplitSource, dtype: str, current, check: CheckFn,
                 first_f: Optional[int], progress: bool,
                 log) -> tuple[Optional[SplitStore], _Sink, int]:
    """Build (or continue building) one split; returns (split or None, problems, n_half).
    A full disk or an unwritable folder becomes a ValueError that says what to do."""
    try:
        return _build_split_files(d, split, src, dtype, current, check, first_f, progress, log)
    except OSError as exc:
        sizes = current[1]
        raise _disk_error(exc, d, int(sizes[sizes > 0].sum())) from exc


def _build_split_files(d: Path, split: str, src: SplitSource, dtype: str, current,
                       check: CheckFn, first_f: Optional[int], progress: bool, log):
    n = _names(d, split)
    n["meta"].unlink(missing_ok=True)  # a stale split must never look complete
    man_hash = hashlib.sha256(b"".join(a.tobytes() for a in current)).hexdigest()
    # Everything the chunk records depend on, the expected F included (it decides problems).
    header = {"format_version": FORMAT_VERSION, "dtype": dtype, "signature": entries_signature(src),
              "manifest": man_hash, "expected_feature_size": first_f or 0}
    records = _read_progress(n["progress"], header)
    if records and not n["partial"].exists():
        records = []  # the records vouch for data that is gone: start again
    if not records:
        n["partial"].unlink(missing_ok=True)
        with atomic_path(n["progress"]) as tmp:
            Path(tmp).write_text(json.dumps(header) + "\n")
    count = len(src.ids)
    starts = np.full(count, -1, dtype=np.int64)
    lengths = np.zeros(count, dtype=np.int64)
    digests = np.zeros((count, 16), dtype=np.uint8)
    sink = _Sink()
    done: set[int] = set()
    n_half, max_err, max_abs, end = 0, 0.0, 0.0, 0
    for rec in records:
        done.update(rec["done"])
        for p, a, t, dg in zip(rec["pos"], rec["start"], rec["len"], rec["digest"]):
            starts[p], lengths[p], digests[p] = a, t, np.frombuffer(bytes.fromhex(dg), np.uint8)
        for msg in rec["problems"]:
            sink.add(msg)
        sink.total += rec["n_problems"] - len(rec["problems"])
        n_half += rec["n_half"]
        max_err, max_abs, end = max(max_err, rec["max_err"]), max(max_abs, rec["max_abs"]), rec["end"]
        first_f = first_f or rec["F"]
    if records:
        log(f"feature store: continuing split '{split}' at video {len(done)}/{count}")
    order = [p for p in _file_order(src) if p not in done]
    chunks = [order[s:s + CHUNK_VIDEOS] for s in range(0, len(order), CHUNK_VIDEOS)]
    t0 = time.time()
    bar = tqdm(total=count, initial=len(done),
               desc=f"building store {split}", unit="video", disable=not progress, leave=False)
    try:
        with open(n["partial"], "r+b" if records else "wb") as fh:
            fh.truncate(end)  # drop bytes written after the last recorded chunk
            fh.seek(end)
            item = np.dtype(_NUMPY_DTYPE[dtype]).itemsize
            for chunk in chunks:
                chunk_sink = _Sink()
                rec = {"done": chunk, "pos": [], "start": [], "len": [], "digest": [],
                       "n_half": 0, "max_err": 0.0, "max_abs": 0.0}
                for p, x, half in check(split, chunk, first_f, chunk_sink):
                    h, err = to_store_dtype(x, dtype)
                    if dtype == "float16" and not np.isfinite(h).all():
                        chunk_sink.add(f"video {src.ids[p]!r} (file '{src.files[p]}'): values up "
                                       f"to {float(x.abs().max()):.4g} exceed float16's range "
                                       f"({FLOAT16_MAX:.0f}); use store_dtype bfloat16 or float32")
                        continue
                    first_f = first_f or x.shape[1]
                    _write(fh, h)
                    dg = hashlib.blake2b(x.numpy().tobytes(), digest_size=16).digest()
                    starts[p], lengths[p] = end // (item * x.shape[1]), x.shape[0]
                    digests[p] = np.frombuffer(dg, np.uint8)
                    rec["pos"].append(p)
                    rec["start"].append(int(starts[p]))
                    rec["len"].append(x.shape[0])
                    rec["digest"].append(dg.hex())
                    rec["n_half"] += int(half)
                    rec["max_err"] = max(rec["max_err"], err)
                    rec["max_abs"] = max(rec["max_abs"], float(x.abs().max()))
                    end += h.nbytes
                fh.flush()
                os.fsync(fh.fileno())  # data first, then the record that vouches for it
                rec.update(end=end, F=first_f, problems=chunk_sink.items,
                           n_problems=chunk_sink.total)
                append_line(n["progress"], json.dumps(rec))
                for msg in chunk_sink.items:
                    sink.add(msg)
                sink.total += chunk_sink.total - len(chunk_sink.items)
                n_half += rec["n_half"]
                max_err, max_abs = max(max_err, rec["max_err"]), max(max_abs, rec["max_abs"])
                bar.update(len(chunk))
        if sink.total:
            return None, sink, n_half
        if (starts < 0).any():  # every video checked and none had a problem: all are written
            raise RuntimeError(f"feature store split '{split}': videos missing after the build")
        F = int(first_f or 0)
        n_steps = end // (item * F) if F else 0
        with atomic_path(n["index"]) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, starts=starts, lengths=lengths, digests=digests,
                         ids=np.array([repr(v) for v in src.ids], dtype=str),
                         labels=np.array([int(v) for v in src.labels], dtype=np.int64),
                         files=current[0], sizes=current[1], mtimes=current[2])
        os.replace(n["partial"], n["data"])
        _fsync_dir(d)  # the renamed data is durable before the marker that vouches for it
        meta = {"format_version": FORMAT_VERSION, "split": split, "dtype": dtype,
                "signature": header["signature"], "feature_size": F, "n_videos": count,
                "n_steps": int(n_steps), "n_half": n_half, "max_abs_error": max_err,
                "max_abs_value": max_abs, "build_seconds": round(time.time() - t0, 3)}
        atomic_write_text(json.dumps(meta, indent=1) + "\n", n["meta"])  # complete marker
        n["progress"].unlink(missing_ok=True)
        _fsync_dir(d)
    finally:
        bar.close()
    msg = (f"feature store: split '{split}' built: {count} videos, {n_steps} steps x F = {F}, "
           f"{dtype}, {end / 2**30:.2f} GiB in {time.time() - t0:.1f} s")
    if dtype != "float32":
        msg += (f"; largest conversion error {max_err:.3g} (largest |value| {max_abs:.3g}, "
                f"relative {max_err / max(max_abs, 1e-30):.2g})")
    log(msg)
    state, why = _split_state(d, split, src, dtype, 0, current)
    if state is None:
        raise RuntimeError(f"feature store split '{split}' unreadable right after its build: {why}")
    return state, sink, n_half


class _Lock:
    """Exclusive lock on ``<store>/lock`` (:func:`dejavid.io.lock_file`); says so when
    it has to wait for another process's build."""

    def __init__(self, d: Path, log):
        self.d, self.log, self.fd = d, log, None

    def __enter__(self):
        try:
            self.d.mkdir(parents=True, exist_ok=True)
            self.fd = lock_file(
                self.d / "lock", f"feature store {self.d}",
                "two runs starting at once could both build it at the same time",
                on_wait=lambda: self.log(f"feature store {self.d}: another process is building "
                                         f"it; waiting"))
        except OSError as exc:
            raise _disk_error(exc, self.d, 0) from exc
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


def open_or_build(cache_dir: str | Path, paths: dict, root: Path, splits: dict[str, SplitSource],
                  check: CheckFn, dtype: str = "float32", feature_size: int = 0,
                  progress: bool = True, log=print, verify: bool = False) -> BuildResult:
    """Open the store of these data paths, building every split that is not current.

    ``paths`` are the four data paths of the config (they name the store); ``splits``
    what the maps say per split; ``check`` reads and checks videos (see module doc).
    A current store is opened without taking the lock or opening a source file.
    ``verify`` re-reads every source file and compares it with the store; a split that
    differs is rebuilt.  Problems found while building are returned, not raised.
    """
    if dtype not in STORE_DTYPES:
        raise ValueError(f"store_dtype must be one of {', '.join(STORE_DTYPES)}, got {dtype!r}")
    d = store_dir(cache_dir, paths, dtype)
    current = {s: manifest(root, src.files) for s, src in splits.items()}
    ready: dict[str, SplitStore] = {}
    stale: dict[str, str] = {}
    for s, src in splits.items():
        state, why = _split_state(d, s, src, dtype, feature_size, current[s])
        if state is None:
            stale[s] = why
        else:
            ready[s] = state
    differs = _verify(ready, splits, check, dtype, progress, log) if verify else {}
    for s, why in differs.items():
        stale[s] = why
        del ready[s]
    sink, n_half = _Sink(), sum(st.meta["n_half"] for st in ready.values())
    if stale:
        with _Lock(d, log):
            for s in list(stale):  # another process may have built it while we waited
                state, why = _split_state(d, s, splits[s], dtype, feature_size, current[s])
                if state is not None and s not in differs:
                    ready[s] = state
                    n_half += state.meta["n_half"]
                    continue
                log(f"feature store: building split '{s}' in {d} ({stale[s]})")
                first_f = feature_size or next((r.feature_size for r in ready.values()), None)
                state, split_sink, split_half = _build_split(d, s, splits[s], dtype, current[s],
                                                             check, first_f, progress, log)
                for msg in split_sink.items:
                    sink.add(msg)
                sink.total += split_sink.total - len(split_sink.items)
                n_half += split_half
                if state is not None:
                    ready[s] = state
    if sink.total:
        return BuildResult(None, sink.items, sink.total, n_half)
    return BuildResult(FeatureStore(d, dtype, ready), [], 0, n_half)


def _verify(ready: dict[str, SplitStore], splits: dict[str, SplitSource], check: CheckFn,
            dtype: str, progress: bool, log) -> dict[str, str]:
    """Re-read every source file of the complete splits; {split: why} for those that differ."""
    out = {}
    for s, st in ready.items():
        store = FeatureStore(st.data_path.parent, dtype, {s: st})
        sink = _Sink()
        bar = tqdm(total=len(st.lengths), desc=f"verifying store {s}", unit="video",
                   disable=not progress, leave=False)
        bad = []
        for p, x, _ in check(s, _file_order(splits[s]), st.feature_size, sink):
            want = from_store_dtype(to_store_dtype(x, dtype)[0], dtype)
            dg = hashlib.blake2b(x.numpy().tobytes(), digest_size=16).hexdigest()
            if dg != st.digests[p] or not torch.equal(store.video(s, p), want):
                bad.append(p)
            bar.update(1)
        bar.close()
        if bad or sink.total:
            src = splits[s]
            first = (f"video {src.ids[bad[0]]!r} (file '{src.files[bad[0]]}')" if bad
                     else sink.items[0])
            out[s] = (f"--verify-data: {len(bad) + sink.total} video(s) differ from the store or "
                      f"can no longer be read (first: {first}); their files changed without a "
                      f"new size or modification time")
        else:
            log(f"feature store: --verify-data: split '{s}' matches its {len(st.lengths)} "
                f"source videos")
    return out
