"""Loading, validating and batching temporal sequences of embeddings (docs/DESIGN.md section 1).

Everything the user can get wrong in the data is found by :func:`load_index`
before any centroid or training work and reported in one error that names each
video id and file (up to 20 problems at once).
"""
from __future__ import annotations

import hashlib
import pickle
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from . import store as feature_store
from ..alignment.backend import packed_row_width
from .packing import RowSource, gather as gather_rows, offsets_of, padded_rows
from .standardize import RunningStats, apply as standardize_features

SPLITS = ("train", "val", "test")
INT64_MIN, INT64_MAX = -2**63, 2**63 - 1   # labels are kept as int64 (index, store, batches)
MAX_REPORTED = 20


class DataValidationError(ValueError):
    """One or more problems in the user's data; ``problems`` lists them."""

    def __init__(self, problems: list[str], total: Optional[int] = None):
        self.problems = problems
        total = len(problems) if total is None else total
        head = f"{total} problem(s) in the dataset"
        if total > len(problems):
            head += f" (first {len(problems)} shown)"
        super().__init__(head + ":\n  - " + "\n  - ".join(problems))


class _Problems:
    def __init__(self):
        self.items: list[str] = []
        self.total = 0

    def add(self, msg: str) -> None:
        self.total += 1
        if len(self.items) < MAX_REPORTED:
            self.items.append(msg)

    def raise_if_any(self) -> None:
        if self.total:
            raise DataValidationError(self.items, self.total)


def load_pickle_map(path: str | Path, what: str) -> dict:
    """Load one of the id2* pickles.  Only ever called on paths the user named."""
    if not str(path):
        raise ValueError(f"config key '{what}' is empty: set it to the path of your {what}.pkl")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path} (set config key '{what}')")
    try:
        with open(path, "rb") as fh:
            obj = pickle.load(fh)
    except Exception as exc:  # corrupt pickle: say which file
        raise ValueError(f"cannot read {what} pickle {path}: {exc}") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{what} pickle {path} must hold a dict video_id -> value, "
                         f"got {type(obj).__name__}")
    return obj


def load_tensor_file(path: Path):
    """torch.load restricted to tensors/containers (weights_only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _select(obj, vid, fname: str):
    """The tensor of ``vid`` in a loaded file: the file's tensor or its dict entry."""
    if isinstance(obj, dict):
        if vid in obj:
            return obj[vid]
        if str(vid) in obj:
            return obj[str(vid)]
        raise KeyError(f"file '{fname}' holds a dict without key {vid!r}")
    return obj


def _as_float(t, vid, fname: str, feature_size: int):
    """Check one tensor; returns (float32 tensor or None, problem or None, converted_half)."""
    where = f"video {vid!r} (file '{fname}')"
    if not isinstance(t, torch.Tensor):
        return None, f"{where}: expected a tensor [T, F], found {type(t).__name__}", False
    t = t.detach()   # saved with requires_grad=True: the values are what matters
    if t.layout != torch.strided:
        return None, (f"{where}: sparse tensor ({t.layout}); save a dense one "
                      f"(tensor.to_dense())"), False
    if t.dim() != 2:
        return None, f"{where}: tensor must be 2-D [T, F], got shape {tuple(t.shape)}", False
    if t.shape[0] == 0:
        return None, f"{where}: empty video (T = 0); every video needs at least one clip", False
    if t.shape[1] == 0:
        return None, f"{where}: no features (F = 0, shape {tuple(t.shape)})", False
    if t.is_complex():
        return None, (f"{where}: complex tensor ({t.dtype}); save real float features "
                      f"(e.g. tensor.real or tensor.abs())"), False
    if not t.is_floating_point():
        return None, (f"{where}: integer tensor ({t.dtype}); save float features "
                      f"(e.g. tensor.float())"), False
    converted = t.dtype in (torch.float16, torch.bfloat16)
    t = t.to(torch.float32)
    if feature_size and t.shape[1] != feature_size:
        return None, (f"{where}: feature size {t.shape[1]} differs from "
                      f"{feature_size}"), converted
    if not bool(torch.isfinite(t).all()):
        return None, f"{where}: contains NaN or Inf values", converted
    return t.contiguous(), None, converted


def video_digest(t: torch.Tensor) -> str:
    """Content hash of one checked float32 video (what :meth:`DataIndex.fingerprint` hashes)."""
    return hashlib.blake2b(t.numpy().tobytes(), digest_size=16).hexdigest()


def check_videos(root: Path, ids: list, fnames: list[str], rows, feature_size: int, problems,
                 progress: bool = True, first_f: Optional[int] = None, desc: str = "checking data"):
    """Read and check the videos ``rows`` (positions into ``ids``/``fnames``), each file once.

    Yields ``(row, x [T, F] float32, was_half)`` for every good video, in file order;
    each problem goes to ``problems.add(message)`` naming the video id and file.
    ``first_f`` is the feature size seen so far (when ``feature_size`` is 0).
    """
    by_file: "OrderedDict[str, list[int]]" = OrderedDict()
    for k in rows:
        by_file.setdefault(fnames[k], []).append(k)
    for fname, file_rows in tqdm(by_file.items(), desc=desc, unit="file",
                                 disable=not progress, leave=False):
        path = root / fname
        if not path.is_file():
            for k in file_rows:
                problems.add(f"video {ids[k]!r} (file '{fname}'): file not found under {root}")
            continue
        try:
            obj = load_tensor_file(path)
        except Exception as exc:
            why = (str(exc).splitlines() or ["empty or cut-off file"])[0][:120]
            for k in file_rows:
                problems.add(f"video {ids[k]!r} (file '{fname}'): cannot be read "
                             f"({type(exc).__name__}: {why}); re-save it with torch.save")
            continue
        for k in file_rows:
            try:
                t = _select(obj, ids[k], fname)
            except KeyError as exc:
                problems.add(f"video {ids[k]!r} (file '{fname}'): {exc.args[0]}")
                continue
            t, problem, half = _as_float(t, ids[k], fname, feature_size or first_f or 0)
            if problem:
                if feature_size == 0 and first_f is not None and "feature size" in problem:
                    problem += f" (the first video checked has F = {first_f})"
                elif feature_size and "feature size" in problem:
                    problem += " (config feature_size)"
                problems.add(problem)
                continue
            if first_f is None:
                first_f = t.shape[1]
            yield k, t, half


@dataclass
class DataIndex:
    """Validated view of a dataset: one entry per video, labels remapped to 0..C-1."""
    root: Path
    ids: list
    files: list[str]
    splits: list[str]
    labels: np.ndarray            # int64 remapped labels
    lengths: np.ndarray           # T per video
    label_values: list            # original label of each class index
    feature_size: int
    digests: list[str]            # content hash per video
    store: Optional[object] = None  # dejavid.data.store.FeatureStore the tensors are read from
    # {"mean": [F], "std": [F]} of the training split when config 'standardize' is on; the
    # datasets apply it to every video (dejavid/data/standardize.py).
    feature_stats: Optional[dict] = None
    # Without a store: {file name: (size, mtime_ns)} as seen before the data check, so that
    # a run reading the files can tell that one changed under it (TSEDataset.changed_files).
    file_stamps: Optional[dict] = None
    _split_rows: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.label_values)

    def rows(self, split: str) -> np.ndarray:
        if split not in self._split_rows:
            self._split_rows[split] = np.array([k for k, s in enumerate(self.splits) if s == split],
                                               dtype=np.int64)
        return self._split_rows[split]

    def fingerprint(self, split: str) -> str:
        """Hash of ids, labels and contents of a split (changes whenever its data does)."""
        h = hashlib.sha256()
        if self.store is not None and self.store.dtype != "float32":
            # A half-precision store trains on other values than the files hold.
            h.update(f"store_dtype={self.store.dtype}\n".encode())
        for k in self.rows(split):
            h.update(f"{self.ids[k]!r}|{self.label_values[self.labels[k]]!r}|{self.digests[k]}\n".encode())
        return h.hexdigest()


def load_index(id2feats: str | Path, id2splits: str | Path, id2labels: str | Path,
               id2fname: str | Path, *, train_split: str = "train", num_classes: int = 0,
               feature_size: int = 0, standardize: bool = False, progress: bool = True,
               store: bool = False, store_dtype: str = "float32",
               cache_dir: str | Path = "cache", verify: bool = False) -> DataIndex:
    """Read the four inputs (docs/DESIGN.md section 1), check every video, return the index
    or raise.

    ``id2feats`` is the folder of feature files; the other three are pickled dicts
    video_id -> split / integer label / file name under ``id2feats``.  Classes are
    those with a ``train_split`` video; ``num_classes`` / ``feature_size`` (0: take
    from the data) must match the data when given.  With ``standardize``, the
    training split's per-feature statistics (``index.feature_stats``) are computed
    while the files are read anyway; the datasets then apply them to every video.

    With ``store`` the tensors come from the packed feature store of these four
    paths under ``cache_dir`` (:mod:`dejavid.data.store`, precision ``store_dtype``),
    built or brought up to date here; ``verify`` then re-reads every file and
    compares it with the store.  Raises
    FileNotFoundError for a missing map/root, DataValidationError (a
    ValueError) listing up to 20 problems with the video id and file.
    """
    if train_split not in SPLITS:
        raise ValueError(f"train_split must be one of {', '.join(SPLITS)}, got {train_split!r}")
    paths = {"id2feats": str(id2feats), "id2splits": str(id2splits),  # they name the store
             "id2labels": str(id2labels), "id2fname": str(id2fname)}
    id2splits = load_pickle_map(id2splits, "id2splits")
    id2labels = load_pickle_map(id2labels, "id2labels")
    id2fname = load_pickle_map(id2fname, "id2fname")
    root = Path(id2feats) if str(id2feats) else None
    if root is None:
        raise ValueError("config key 'id2feats' is empty: set it to the folder holding the feature files")
    if not root.is_dir():
        raise FileNotFoundError(f"id2feats folder not found: {root} (set config key 'id2feats')")

    problems = _Problems()
    maps = {"id2splits": id2splits, "id2labels": id2labels, "id2fname": id2fname}
    all_ids = set(id2splits) | set(id2labels) | set(id2fname)
    ids = []
    for vid in sorted(all_ids, key=repr):
        missing = [name for name, m in maps.items() if vid not in m]
        if missing:
            present = [name for name in maps if name not in missing]
            problems.add(f"video {vid!r}: present in {', '.join(present)} but missing from "
                         f"{', '.join(missing)}; every id must appear in all three maps")
            continue
        split, label, fname = id2splits[vid], id2labels[vid], id2fname[vid]
        if split not in SPLITS:
            problems.add(f"video {vid!r} (file '{fname}'): unknown split {split!r}; "
                         f"use one of {', '.join(SPLITS)}")
            continue
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
            problems.add(f"video {vid!r} (file '{fname}'): label {label!r} is not an integer")
            continue
        if not INT64_MIN <= int(label) <= INT64_MAX:
            problems.add(f"video {vid!r} (file '{fname}'): label {label} is outside the 64-bit "
                         f"integer range [-2^63, 2^63 - 1]; number the classes with smaller "
                         f"integers")
            continue
        if not isinstance(fname, (str, Path)):
            problems.add(f"video {vid!r}: file name {fname!r} is not a string")
            continue
        if "\0" in str(fname):
            problems.add(f"video {vid!r}: file name {fname!r} contains a NUL character, which "
                         f"no file name can hold; fix its id2fname entry")
            continue
        ids.append(vid)
    problems.raise_if_any()
    if not ids:
        raise ValueError("the dataset maps are empty: no video ids found")

    train_labels = {int(id2labels[v]) for v in ids if id2splits[v] == train_split}
    for vid in ids:
        lab = int(id2labels[vid])
        if id2splits[vid] != train_split and lab not in train_labels:
            problems.add(f"video {vid!r} (file '{id2fname[vid]}'): label {lab} of split "
                         f"'{id2splits[vid]}' has no training video; every class needs at least "
                         f"one '{train_split}' video")
    problems.raise_if_any()
    label_values = sorted(train_labels)
    if num_classes and num_classes != len(label_values):
        raise ValueError(f"config num_classes = {num_classes} but the data has "
                         f"{len(label_values)} classes with training videos; fix num_classes "
                         f"(or set it to 0 to take it from the data)")
    remap = {v: k for k, v in enumerate(label_values)}

    fnames = [str(id2fname[v]) for v in ids]
    split_of = [id2splits[v] for v in ids]
    opened = None  # the FeatureStore the tensors are read from
    train_stats = RunningStats() if standardize else None
    if store:
        # The packed feature store (dejavid/data/store.py) reads each file only when the store is
        # built or out of date, with the same checks as below (check_videos).
        lengths, digests, first_f, n_half, opened = _from_store(
            paths, root, ids, fnames, split_of, [id2labels[v] for v in ids], feature_size,
            store_dtype, cache_dir, problems, progress, verify)
    else:
        lengths = np.zeros(len(ids), dtype=np.int64)
        digests = [""] * len(ids)
        n_half = 0
        first_f = None
        file_stamps = _stamps(root, fnames)   # before reading: a later change differs
        for k, t, half in check_videos(root, ids, fnames, range(len(ids)), feature_size,
                                       problems, progress=progress):
            n_half += int(half)
            first_f = first_f or t.shape[1]
            lengths[k] = t.shape[0]
            if train_stats is not None and split_of[k] == train_split:
                train_stats.add(t)   # while the files are read anyway
            digests[k] = video_digest(t)
    problems.raise_if_any()
    if n_half:
        warnings.warn(f"{n_half} video(s) stored as float16/bfloat16 were converted to float32",
                      RuntimeWarning, stacklevel=2)
    if train_stats is not None and opened is not None:
        # From the store's memory map (no second pass over the files), in the order the file
        # check visits the videos (grouped by file), so the statistics are bitwise those
        # computed without the store.
        first_seen: dict = {}
        for k, f in enumerate(fnames):
            first_seen.setdefault(f, k)
        train_rows = [k for k, sp in enumerate(split_of) if sp == train_split]
        pos = {k: p for p, k in enumerate(train_rows)}
        for k in sorted(train_rows, key=lambda k: (first_seen[fnames[k]], k)):
            train_stats.add(opened.video(train_split, pos[k]))
    return DataIndex(root=root, ids=ids, files=fnames, splits=split_of,
                     labels=np.array([remap.get(int(id2labels[v]), -1) for v in ids], dtype=np.int64),
                     lengths=lengths, label_values=label_values,
                     feature_size=int(feature_size or first_f), digests=digests, store=opened,
                     feature_stats=train_stats.result() if train_stats is not None else None,
                     file_stamps=None if store else file_stamps)


def _stamps(root: Path, fnames: list[str]) -> dict:
    """{file name: (size, mtime_ns)} of the feature files (``os.stat`` only)."""
    names, sizes, mtimes = feature_store.manifest(root, fnames)
    return {n: (int(a), int(b)) for n, a, b in zip(names.tolist(), sizes.tolist(),
                                                   mtimes.tolist())}


def _from_store(paths: dict, root: Path, ids: list, fnames: list[str], split_of: list[str],
                labels: list, feature_size: int, store_dtype: str, cache_dir: str | Path,
                problems: _Problems, progress: bool, verify: bool):
    """Lengths, digests, F and half-precision count of every video, read from the feature
    store (built or brought up to date first, checking files with :func:`check_videos`)."""
    rows_of = {s: [k for k, sp in enumerate(split_of) if sp == s] for s in SPLITS}
    rows_of = {s: rows for s, rows in rows_of.items() if rows}
    sources = {s: feature_store.SplitSource([ids[k] for k in rows], [fnames[k] for k in rows],
                                            [labels[k] for k in rows])
               for s, rows in rows_of.items()}

    def check(split, positions, first_f, sink):
        rows = rows_of[split]
        pos_of = {rows[p]: p for p in positions}
        for k, t, half in check_videos(root, ids, fnames, [rows[p] for p in positions],
                                       feature_size, sink, progress=False, first_f=first_f):
            yield pos_of[k], t, half

    res = feature_store.open_or_build(cache_dir, paths, root, sources, check, store_dtype,
                                      feature_size, progress, log=tqdm.write, verify=verify)
    for msg in res.problems:
        problems.add(msg)
    problems.total += res.total_problems - len(res.problems)
    problems.raise_if_any()
    lengths = np.zeros(len(ids), dtype=np.int64)
    digests = [""] * len(ids)
    for s, rows in rows_of.items():
        split = res.store.splits[s]
        lengths[rows] = split.lengths
        for k, dg in zip(rows, split.digests):
            digests[k] = dg
    first_f = next(iter(res.store.splits.values())).feature_size
    return lengths, digests, first_f, res.n_half, res.store


class TSEDataset(Dataset):
    """Videos of one split: item -> (x [T, F] float32, label, row in the index).

    With a feature store on the index, items are slices of its memory map (or, after
    ``device`` was given and the split fits, of its copy in device memory).  With
    ``in_memory`` the split is held as one ``[n_steps, F]`` array.  Either way
    :meth:`batch` assembles a batch with one gather of rows
    (:func:`dejavid.data.packing.gather`); otherwise it reads the videos one by one."""

    def __init__(self, index: DataIndex, split: str, in_memory: bool = False,
                 progress: bool = True, device=None):
        self.index = index
        self.split = split
        self.rows = index.rows(split)
        if len(self.rows) == 0:
            raise ValueError(f"split '{split}' has no videos")
        self._files: "OrderedDict[str, object]" = OrderedDict()
        self._held: Optional[RowSource] = None      # in_memory rows (pickled to workers)
        self._mapped: Optional[RowSource] = None    # the store's rows (reopened per process)
        self.on_device = (device is not None and index.store is not None
                          and index.store.to_device(split, device, log=tqdm.write))
        if in_memory and not self.on_device:
            self._held = self._hold(progress)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_mapped"] = None
        return state

    def _store_rows(self) -> RowSource:
        store = self.index.store
        s = store.splits[self.split]
        data = np.asarray(store.array(self.split))
        if data.dtype != np.float32:
            data = data.view(np.uint16)
        return RowSource(data, store.dtype, s.starts, s.lengths)

    def _hold(self, progress: bool) -> RowSource:
        """The whole split in RAM as one array (the store's copied, or the files read)."""
        if self.index.store is not None:
            mapped = self._store_rows()
            data = np.empty_like(mapped.data)
            step = max(1, (64 << 20) // max(1, data.shape[1] * data.itemsize))  # ~64 MB a copy
            for a in tqdm(range(0, len(data), step), desc=f"loading {self.split}", unit="chunk",
                          leave=False, disable=not progress):
                data[a:a + step] = mapped.data[a:a + step]
            return RowSource(data, mapped.kind, mapped.starts, mapped.lengths)
        lengths = self.index.lengths[self.rows].astype(np.int64)
        starts = offsets_of(lengths)[:-1]
        data = np.empty((int(lengths.sum()), self.index.feature_size), dtype=np.float32)
        for n in tqdm(range(len(self.rows)), desc=f"loading {self.split}", unit="video",
                      leave=False, disable=not progress):
            x = self._load(int(self.rows[n]))
            if x.shape[0] != lengths[n]:
                raise ValueError(f"video {self.index.ids[self.rows[n]]!r} (file "
                                 f"'{self.index.files[self.rows[n]]}') changed since the data "
                                 f"check: it has {x.shape[0]} steps, not {lengths[n]}")
            data[starts[n]:starts[n] + lengths[n]] = x.numpy()
        return RowSource(data, "float32", starts, lengths)

    def _row_source(self) -> Optional[RowSource]:
        """The split as one array of rows, or None where videos are read one by one
        (per-file reading, or a store held in device memory)."""
        if self._held is not None:
            return self._held
        if self.index.store is None or self.on_device:
            return None
        if self._mapped is None:
            self._mapped = self._store_rows()
        return self._mapped

    def batch(self, positions) -> "Batch":
        """The videos at ``positions`` as one packed :class:`Batch`, equal to
        ``collate_packed([self[n] for n in positions])``."""
        rows = self._row_source()
        if rows is not None:
            x, offsets = gather_rows(rows, positions, self.index.feature_stats)
        elif self.on_device:
            x, offsets = self._device_rows(positions)
        else:
            return collate_packed([self[n] for n in positions])
        return labelled_batch(self.index, self.rows, positions, x, offsets)

    def _device_rows(self, positions) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's rows from the store's copy in device memory: one ``index_select``,
        then conversion, standardisation and padding as whole-batch operations (a few
        kernels per batch instead of a few per video)."""
        store = self.index.store
        s = store.splits[self.split]
        src = store.on_device(self.split)
        pos = np.asarray(positions, dtype=np.int64)
        lengths = s.lengths[pos]
        offsets = offsets_of(lengths)
        N = int(offsets[-1])
        rows = np.repeat(s.starts[pos] - offsets[:-1], lengths) + np.arange(N)
        sel = src.index_select(0, torch.from_numpy(rows).to(src.device, non_blocking=True))
        x = standardize_features(feature_store.from_store_dtype(sel, store.dtype),
                                 self.index.feature_stats)
        F = x.shape[1]
        if packed_row_width(F) != F:
            full = padded_rows(N, F, x.dtype, x.device)
            full[:, :F].copy_(x)
            x = full[:, :F]
        return x, torch.from_numpy(offsets)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def reads_files(self) -> bool:
        """Whether videos are read from the feature files during the run (no feature
        store, not ``in_memory``), so that a file changed meanwhile would reach it."""
        return (self.index.file_stamps is not None and self._held is None
                and self.index.store is None)

    def changed_files(self) -> list[str]:
        """The split's feature files whose size or modification time differs from the
        data check's (``os.stat`` only); always [] where :attr:`reads_files` is False."""
        if not self.reads_files:
            return []
        files = list(dict.fromkeys(self.index.files[int(k)] for k in self.rows))
        now = _stamps(self.index.root, files)
        return [f for f in files if now[f] != self.index.file_stamps.get(f)]

    def _load(self, k: int) -> torch.Tensor:
        fname = self.index.files[k]
        obj = self._files.get(fname)
        try:
            if obj is None:
                obj = load_tensor_file(self.index.root / fname)
                self._files[fname] = obj
                if len(self._files) > 4:  # small LRU: multi-video files are read once per pass
                    self._files.popitem(last=False)
            t = _select(obj, self.index.ids[k], fname)
            ok = (isinstance(t, torch.Tensor) and t.layout == torch.strided and t.dim() == 2
                  and t.shape[0] > 0 and t.shape[1] == self.index.feature_size
                  and t.is_floating_point())
            why = "it is no longer a float tensor [T, F = %d]" % self.index.feature_size
        except Exception as exc:  # deleted, cut off, unreadable
            ok, why = False, f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:120]}"
        if not ok:
            raise ValueError(f"video {self.index.ids[k]!r} (file '{fname}') changed since the "
                             f"data check ({why}); the feature files must stay as they were "
                             f"for the whole run (or use in_memory: true)")
        return t.detach().to(torch.float32).contiguous()

    def _video(self, n: int) -> torch.Tensor:
        if self._held is not None:
            return self._held.video(n)
        if self.index.store is not None:
            return self.index.store.video(self.split, n)
        return self._load(int(self.rows[n]))

    def __getitem__(self, n: int):
        return self.item(n)

    def item(self, n: int, standardized: bool = True):
        """(x [T, F] float32, label, row) of the ``n``-th video; with ``standardized``
        False, x as stored, even when the index carries standardisation statistics."""
        k = int(self.rows[n])
        x = self._video(n)
        if standardized:
            x = standardize_features(x, self.index.feature_stats)
        return x, int(self.index.labels[k]), k


@dataclass
class Batch:
    x: torch.Tensor        # [N, F] samples concatenated in time (rows may be padded, see collate_packed)
    offsets: torch.Tensor  # [B + 1] int64
    labels: torch.Tensor   # [B] int64
    rows: torch.Tensor     # [B] int64 row in the DataIndex

    def to(self, device) -> "Batch":
        return Batch(packed_to(self.x, device), self.offsets.to(device),
                     self.labels.to(device), self.rows)


def packed_to(x: torch.Tensor, device) -> torch.Tensor:
    """A batch's x [N, F] on ``device``, keeping its padded layout."""
    N, F = x.shape
    W = x.stride(0)
    if torch.device(device) != x.device and W > F and x.stride(1) == 1 and N > 0:
        # a padded batch travels as its dense [N, W] rows (one plain copy; a strided
        # source would first be packed by a copy on the host) and is viewed there
        return x.as_strided((N, W), (W, 1)).to(device, non_blocking=True)[:, :F]
    return x.to(device, non_blocking=True)


def labelled_batch(index: DataIndex, split_rows: np.ndarray, positions, x: torch.Tensor,
                   offsets: torch.Tensor) -> Batch:
    """The :class:`Batch` of packed rows ``x``/``offsets`` holding the videos at dataset
    ``positions`` of a split whose index rows are ``split_rows``."""
    k = split_rows[np.asarray(positions, dtype=np.int64)]
    return Batch(x, offsets, torch.from_numpy(index.labels[k].astype(np.int64)),
                 torch.from_numpy(k.astype(np.int64)))


def collate_packed(items) -> Batch:
    """Concatenate variable-length samples; no padding exists to leak into distances.

    ``x`` is [N, F]; when ``packed_row_width(F) > F`` it is the first F columns of a
    64-byte aligned [N, width] tensor whose other columns are zero, the layout the
    numba kernels read in place.
    """
    xs, labels, rows = zip(*items)
    lengths = torch.tensor([x.shape[0] for x in xs], dtype=torch.int64)
    offsets = torch.zeros(len(xs) + 1, dtype=torch.int64)
    torch.cumsum(lengths, 0, out=offsets[1:])
    F = xs[0].shape[-1]
    width = packed_row_width(F)
    if xs[0].dim() != 2 or width == F:
        x = torch.cat(xs, 0)
    else:
        x = padded_rows(int(offsets[-1]), F, xs[0].dtype)[:, :F]
        # one copy per sample: 1.3x faster than torch.cat into the strided view (measured)
        for t, a, b in zip(xs, offsets[:-1].tolist(), offsets[1:].tolist()):
            if t.shape != (b - a, F):
                raise ValueError(f"samples of a batch must all be [T, {F}], got {tuple(t.shape)}")
            x[a:b].copy_(t)
    return Batch(x, offsets, torch.tensor(labels, dtype=torch.int64),
                 torch.tensor(rows, dtype=torch.int64))
