"""Where the videos are: every source lists :class:`VideoItem` (id, path, label name,
split) and the class names in label-id order.

A source never opens a video and never drops a listed one: missing files, unknown
labels and duplicate ids are the pipeline's failures (``failures.csv``), so that
nothing listed is lost silently.  Splits are this package's names (``train``, ``val``,
``test``; :data:`dejavid.data.dataset.SPLITS`).

    folder_source    root/<class>/<video>; splits from a split file or a seeded,
                     stratified validation fraction
    csv_source       a manifest ``path,label[,split]``
    hmdb51_source    HMDB51's ``<class>_test_split{1,2,3}.txt`` (1 train, 2 test, 0 unused)
    k400_source      Kinetics-400's ``train.csv`` / ``validate.csv`` / ``test.csv``
    ssv2_source      Something-Something V2's ``labels.json``, ``train.json``, ``validation.json``
"""
from __future__ import annotations

import csv
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv")
KINDS = ("folder", "csv", "hmdb51", "k400", "ssv2")


@dataclass(frozen=True)
class VideoItem:
    """One listed video: ``vid`` (unique id, also the tensor file's stem), ``path`` to the
    video file (it may not exist), ``label`` (class name) and ``split``."""
    vid: str
    path: str
    label: str
    split: str


@dataclass
class Listing:
    """A source's answer: the items in a stable order and the class names, label id ->
    name (``classes[i]`` is label ``i``)."""
    items: list[VideoItem]
    classes: list[str]


def _need_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found; check the path")
    return path


def _need_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} {path} is not a folder; check the path")
    return path


def stratified_split(items: list[tuple[str, str]], val_fraction: float, seed: int) -> dict[str, str]:
    """``{vid: 'train' | 'val'}`` for ``(vid, label)`` pairs: per class, a seeded shuffle of
    its sorted ids puts ``round(val_fraction * n)`` of them (at least one when the class
    has two or more videos and the fraction is above 0) in ``val``.  The same ids, fraction
    and seed give the same split on every machine."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"--val-fraction {val_fraction} must be in [0, 1)")
    by_class: dict[str, list[str]] = {}
    for vid, label in items:
        by_class.setdefault(label, []).append(vid)
    out = {}
    for label in sorted(by_class):
        vids = sorted(by_class[label])
        random.Random(f"{seed}/{label}").shuffle(vids)
        n_val = round(val_fraction * len(vids))
        if val_fraction > 0 and len(vids) >= 2:
            n_val = min(max(n_val, 1), len(vids) - 1)
        for n, vid in enumerate(vids):
            out[vid] = "val" if n < n_val else "train"
    return out


def read_split_file(path: Path) -> dict[str, str]:
    """A split file: CSV rows ``id,split`` (a header row ``id,split`` is allowed)."""
    out = {}
    with open(_need_file(path, "split file"), newline="") as fh:
        for n, row in enumerate(csv.reader(fh), 1):
            if not row or row[0].strip() in ("", "id"):
                continue
            if len(row) < 2:
                raise ValueError(f"split file {path} line {n}: expected 'id,split', got {row!r}")
            out[row[0].strip()] = row[1].strip()
    return out


def _check_splits(split_of: dict[str, str], where: str) -> None:
    bad = sorted({s for s in split_of.values() if s not in ("train", "val", "test")})
    if bad:
        raise ValueError(f"{where}: unknown split name(s) {bad}; use train, val or test")


def _videos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


def folder_source(root: str | Path, val_fraction: float = 0.1, seed: int = 0,
                  split_file: Optional[str | Path] = None) -> Listing:
    """``root/<class>/<video>``: label = the folder's name, id = ``<class>/<file stem>``.
    Splits come from ``split_file`` (ids it does not list are ``train``) or else from
    :func:`stratified_split`."""
    root = _need_dir(Path(root), "video folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"video folder {root} has no class subfolders; put each class's "
                         f"videos in root/<class>/")
    pairs = [(f"{c}/{v.stem}", str(v), c) for c in classes for v in _videos_in(root / c)]
    if split_file:
        listed = read_split_file(Path(split_file))
        _check_splits(listed, f"split file {split_file}")
        split_of = {vid: listed.get(vid, "train") for vid, _, _ in pairs}
    else:
        split_of = stratified_split([(vid, c) for vid, _, c in pairs], val_fraction, seed)
    return Listing([VideoItem(vid, path, c, split_of[vid]) for vid, path, c in pairs], classes)


def csv_source(manifest: str | Path, val_fraction: float = 0.1, seed: int = 0,
               video_root: Optional[str | Path] = None,
               classes: Optional[list[str]] = None) -> Listing:
    """A CSV manifest with the header ``path,label[,split]``.  Relative paths are taken from
    ``video_root`` (default: the manifest's folder); id = the path without its suffix.
    Rows without a split get one from :func:`stratified_split`.  ``classes`` fixes the
    class list (labels outside it become failures); by default the sorted labels."""
    manifest = _need_file(Path(manifest), "manifest")
    base = Path(video_root) if video_root else manifest.parent
    rows = []
    with open(manifest, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise ValueError(f"manifest {manifest}: the first row must be the header "
                             f"'path,label[,split]', got {reader.fieldnames}")
        for row in reader:
            rel = row["path"].strip()
            vid = str(Path(rel).with_suffix("")).replace(os.sep, "/")
            rows.append((vid, str(base / rel), row["label"].strip(), (row.get("split") or "").strip()))
    _check_splits({r[0]: r[3] for r in rows if r[3]}, f"manifest {manifest}")
    auto = stratified_split([(r[0], r[2]) for r in rows if not r[3]], val_fraction, seed)
    items = [VideoItem(vid, path, label, split or auto[vid]) for vid, path, label, split in rows]
    return Listing(items, list(classes) if classes else sorted({r[2] for r in rows}))


HMDB51_SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<n>[123])\.txt$")
HMDB51_TAGS = {"1": "train", "2": "test"}     # 0: not used in this split


def hmdb51_source(annotations: str | Path, video_root: str | Path, split_number: int = 1) -> Listing:
    """HMDB51 from its own split files ``<class>_test_split<N>.txt`` (lines
    ``<video>.avi <tag>``; tag 1 train, 2 test, 0 not in this split).  Videos are
    ``video_root/<class>/<video>``; id = the file stem (unique in HMDB51)."""
    if split_number not in (1, 2, 3):
        raise ValueError(f"--split-number {split_number}: HMDB51 has splits 1, 2 and 3")
    annotations = _need_dir(Path(annotations), "HMDB51 annotation folder")
    files = {}
    for p in sorted(annotations.iterdir()):
        m = HMDB51_SPLIT_FILE.match(p.name)
        if m and int(m["n"]) == split_number:
            files[m["cls"]] = p
    if not files:
        raise ValueError(f"HMDB51 annotation folder {annotations} has no "
                         f"'<class>_test_split{split_number}.txt' files")
    items = []
    for cls in sorted(files):
        for n, line in enumerate(files[cls].read_text().splitlines(), 1):
            words = line.split()
            if not words:
                continue
            if len(words) != 2 or words[1] not in ("0", "1", "2"):
                raise ValueError(f"{files[cls]} line {n}: expected '<video> <0|1|2>', got {line!r}")
            if words[1] in HMDB51_TAGS:
                items.append(VideoItem(Path(words[0]).stem, str(Path(video_root) / cls / words[0]),
                                       cls, HMDB51_TAGS[words[1]]))
    return Listing(items, sorted(files))


K400_FILES = {"train.csv": "train", "validate.csv": "val", "test.csv": "test"}


def k400_name(youtube_id: str, start: str, end: str) -> str:
    """The file stem of a Kinetics clip: ``<youtube_id>_<start:06d>_<end:06d>``."""
    return f"{youtube_id}_{int(float(start)):06d}_{int(float(end)):06d}"


def index_videos(video_root: Path) -> dict[str, str]:
    """``{file stem: path}`` of every video file under ``video_root`` (any depth: the
    downloaders sort Kinetics by split and class, or not at all).  A stem found twice keeps
    the first path in sorted order."""
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(_need_dir(video_root, "video folder")):
        dirs.sort()
        for name in sorted(files):
            stem, suffix = os.path.splitext(name)
            if suffix.lower() in VIDEO_SUFFIXES:
                found.setdefault(stem, os.path.join(folder, name))
    return found


def k400_source(annotations: str | Path, video_root: str | Path,
                splits: Iterable[str] = ("train", "val")) -> Listing:
    """Kinetics-400 from the official CSVs (``label,youtube_id,time_start,time_end,split``):
    ``train.csv`` -> train, ``validate.csv`` -> val, ``test.csv`` -> test (read when listed
    in ``splits`` and present).  Classes: the sorted labels of ``train.csv``, as the
    official loaders number them.  A video is found by its name anywhere under
    ``video_root``; one not found keeps its expected path and becomes a 'missing'
    failure."""
    annotations = _need_dir(Path(annotations), "Kinetics annotation folder")
    _need_file(annotations / "train.csv", "Kinetics annotation file")
    on_disk = index_videos(Path(video_root))
    rows: dict[str, list[dict]] = {}
    for fname, split in K400_FILES.items():
        if (annotations / fname).is_file() and (split in splits or fname == "train.csv"):
            with open(annotations / fname, newline="") as fh:
                reader = csv.DictReader(fh)
                need = {"youtube_id", "time_start", "time_end"}
                if not reader.fieldnames or not need <= set(reader.fieldnames):
                    raise ValueError(f"{annotations / fname}: expected the header "
                                     f"'label,youtube_id,time_start,time_end,split', got "
                                     f"{reader.fieldnames}")
                rows[split] = list(reader)
    classes = sorted({r["label"] for r in rows["train"]})
    items = []
    for split in ("train", "val", "test"):
        if split not in splits:
            continue
        for r in rows.get(split, []):
            stem = k400_name(r["youtube_id"], r["time_start"], r["time_end"])
            path = on_disk.get(stem, str(Path(video_root) / f"{stem}.mp4"))
            items.append(VideoItem(stem, path, (r.get("label") or "").strip(), split))
    return Listing(items, classes)


SSV2_FILES = {"train.json": "train", "validation.json": "val"}
SSV2_PREFIX = "something-something-v2-"     # the names of some copies of the same files


def ssv2_template(template: str) -> str:
    """A Something-Something V2 template as the label names in ``labels.json`` spell it:
    the placeholders' brackets removed (``"Putting [something] on [something]"`` ->
    ``"Putting something on something"``), as the official loaders map them."""
    return template.replace("[", "").replace("]", "")


def ssv2_source(annotations: str | Path, video_root: str | Path) -> Listing:
    """Something-Something V2: ``labels.json`` (``{class name: "id"}``), ``train.json`` and
    ``validation.json`` (lists of ``{"id", "template", ...}``; also found with the prefix
    ``something-something-v2-``); the video is ``video_root/<id>.webm``."""
    annotations = _need_dir(Path(annotations), "SSv2 annotation folder")
    prefix = "" if (annotations / "labels.json").is_file() else SSV2_PREFIX
    labels = json.loads(_need_file(annotations / f"{prefix}labels.json", "SSv2 label file").read_text())
    by_id = {int(i): name for name, i in labels.items()}
    if sorted(by_id) != list(range(len(by_id))):
        raise ValueError(f"{annotations / 'labels.json'}: label ids must be 0..{len(by_id) - 1}")
    classes = [by_id[i] for i in range(len(by_id))]
    items = []
    for fname, split in SSV2_FILES.items():
        path = annotations / f"{prefix}{fname}"
        if not path.is_file():
            continue
        for entry in json.loads(path.read_text()):
            vid = str(entry["id"])
            items.append(VideoItem(vid, str(Path(video_root) / f"{vid}.webm"),
                                   ssv2_template(entry.get("template", "")), split))
    return Listing(items, classes)


def open_source(kind: str, videos: Optional[str] = None, annotations: Optional[str] = None,
                val_fraction: float = 0.1, seed: int = 0, split_file: Optional[str] = None,
                split_number: int = 1, k400_splits: Iterable[str] = ("train", "val"),
                classes: Optional[list[str]] = None) -> Listing:
    """The listing of source ``kind`` (one of :data:`KINDS`) from the script's arguments:
    ``videos`` is the folder of videos (the class tree for ``folder``), ``annotations``
    the manifest (``csv``) or the folder of the data set's annotation files."""
    if kind not in KINDS:
        raise ValueError(f"unknown --source {kind!r}; one of {', '.join(KINDS)}")
    if kind == "folder":
        if not videos:
            raise ValueError("--source folder needs --videos ROOT (one subfolder per class)")
        return folder_source(videos, val_fraction, seed, split_file)
    if not annotations:
        raise ValueError(f"--source {kind} needs --annotations "
                         f"({'the manifest CSV' if kind == 'csv' else 'the folder of its annotation files'})")
    if kind == "csv":
        return csv_source(annotations, val_fraction, seed, videos, classes)
    if not videos:
        raise ValueError(f"--source {kind} needs --videos (the folder holding the videos)")
    if kind == "hmdb51":
        return hmdb51_source(annotations, videos, split_number)
    if kind == "k400":
        return k400_source(annotations, videos, k400_splits)
    return ssv2_source(annotations, videos)
