"""Tiny synthetic datasets in the on-disk format of docs/DESIGN.md section 1, for tests.

    videos = {"a": (torch.randn(5, 3), 0, "train"), "b": (torch.randn(4, 3), 1, "val")}
    paths = write_dataset(tmp_path, videos)           # the four inputs, as Paths
    cfg = make_config(paths, num_timesteps=4)         # a full, checked config dict
    index = index_from_config(cfg, progress=False)

File names are stable so tests can damage one file after writing: a per-file
video ``vid`` lives in ``paths["id2feats"] / f"{vid}.pt"``, and dict-layout
videos share ``paths["id2feats"] / DICT_FILE``.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from dejavid.config.files import load_config

DICT_FILE = "videos.pt"
MAP_KEYS = ("id2splits", "id2labels", "id2fname")


def feature_file(vid: Any) -> str:
    """File name (relative to ``id2feats``) of a per-file video."""
    return f"{vid}.pt"


def write_dataset(root: str | Path, videos: Mapping[Any, tuple[Any, int, str]],
                  layout: str | Mapping[Any, str] = "per_file") -> dict[str, Path]:
    """Write ``videos`` (``{vid: (tensor [T, F], label, split)}``) under ``root``.

    ``layout`` is ``'per_file'`` (one ``torch.save`` file per video),
    ``'dict'`` (all videos in one file holding ``{vid: tensor}``), or a mapping
    ``vid -> 'per_file' | 'dict'`` to mix both.  The "tensor" may be any object
    (to test bad data); it is saved as given.

    Returns ``{"id2feats": root/feats, "id2splits": root/id2splits.pkl,
    "id2labels": ..., "id2fname": ...}``.
    """
    root = Path(root)
    feats = root / "feats"
    feats.mkdir(parents=True, exist_ok=True)
    packed: dict = {}
    fnames: dict = {}
    for vid, (tensor, _, _) in videos.items():
        kind = layout if isinstance(layout, str) else layout[vid]
        if kind == "per_file":
            fnames[vid] = feature_file(vid)
            torch.save(tensor, feats / fnames[vid])
        elif kind == "dict":
            fnames[vid] = DICT_FILE
            packed[vid] = tensor
        else:
            raise ValueError(f"layout must be 'per_file' or 'dict', got {kind!r}")
    if packed:
        torch.save(packed, feats / DICT_FILE)
    paths = {"id2feats": feats}
    maps = {"id2splits": {v: s for v, (_, _, s) in videos.items()},
            "id2labels": {v: lab for v, (_, lab, _) in videos.items()},
            "id2fname": fnames}
    for key in MAP_KEYS:
        paths[key] = root / f"{key}.pkl"
        write_pickle(paths[key], maps[key])
    return paths


def write_pickle(path: str | Path, obj: Any) -> None:
    """Overwrite one of the id2* maps (or put anything else there)."""
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def read_pickle(path: str | Path) -> Any:
    with open(path, "rb") as fh:
        return pickle.load(fh)


def _config_values(paths: Mapping[str, Path], overrides: dict) -> dict:
    """The four data paths, plus cache/run folders beside the data (never the cwd)."""
    work = Path(paths["id2feats"]).parent
    values = {"cache_dir": work / "cache", "output_dir": work / "runs"}
    values.update(paths)
    values.update(overrides)
    return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}


def make_config(paths: Mapping[str, Path], **overrides) -> dict:
    """A full config (defaults <- ``paths`` <- ``overrides``) via ``load_config``.

    ``cache_dir`` and ``output_dir`` default to folders beside ``id2feats``.
    Overrides are type-checked like any config value (e.g. ints for int keys).
    """
    return load_config(None, base=_config_values(paths, overrides))


def write_config_yaml(path: str | Path, paths: Mapping[str, Path], **overrides) -> Path:
    """Write a YAML config for the entry scripts (same values as :func:`make_config`)."""
    path = Path(path)
    path.write_text(yaml.safe_dump(_config_values(paths, overrides), sort_keys=True))
    return path


def ramp_videos(pairs: int, splits: Mapping[str, int] | None = None, seed: int = 0,
                noise: float = 0.03, lengths: tuple[int, int] = (5, 12)) -> dict:
    """Two classes that only temporal order separates: 0 rises, 1 falls (F = 2).

    Each class-1 video is the time reverse of a class-0 video, so every pair has
    exactly the same mean over time.  ``splits`` gives the number of pairs per
    split (default: all ``pairs`` in 'train' and as many again in 'val').
    Returns ``{vid: (tensor, label, split)}`` for :func:`write_dataset`.
    """
    g = torch.Generator().manual_seed(seed)
    splits = dict(splits or {"train": pairs, "val": pairs})
    videos = {}
    for split, n in splits.items():
        for p in range(n):
            T = int(torch.randint(lengths[0], lengths[1] + 1, (1,), generator=g))
            t = torch.linspace(0.0, 1.0, T)
            up = torch.stack([t, 0.5 * t], 1) + noise * torch.randn(T, 2, generator=g)
            videos[f"{split}_up{p:03d}"] = (up, 0, split)
            videos[f"{split}_down{p:03d}"] = (up.flip(0).contiguous(), 1, split)
    return videos


def level_videos(per_class: Mapping[str, int], num_classes: int = 3, seed: int = 0,
                 noise: float = 0.1, lengths: tuple[int, int] = (3, 9)) -> dict:
    """Classes that the mean over time separates: class c is the constant level c (F = 3) plus
    noise.  ``per_class`` gives the videos per class and split."""
    g = torch.Generator().manual_seed(seed)
    videos = {}
    for split, n in per_class.items():
        for c in range(num_classes):
            for k in range(n):
                T = int(torch.randint(lengths[0], lengths[1] + 1, (1,), generator=g))
                x = float(c) + noise * torch.randn(T, 3, generator=g)
                videos[f"{split}_c{c}_{k:03d}"] = (x, c, split)
    return videos


def seeded_video(t: int, seed: int, f: int = 3, scale: float = 1.0) -> torch.Tensor:
    """A [t, f] standard-normal video drawn from its own seed (times ``scale``)."""
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(t, f, generator=g)


def good_videos() -> dict:
    """Labels {10, 3, 7} (remapped to 3->0, 7->1, 10->2); every class has a train video."""
    return {
        "a1": (seeded_video(4, 1), 10, "train"),
        "a2": (seeded_video(2, 2), 3, "train"),
        "a3": (seeded_video(5, 3), 7, "train"),
        "a4": (seeded_video(1, 4), 3, "train"),
        "b1": (seeded_video(3, 5), 10, "val"),
        "b2": (seeded_video(6, 6), 7, "test"),
    }


def replacing(where: str, *body: str, imports: str = "") -> str:
    """Python source that replaces function ``where`` ('package.module.name') by one whose
    body is the lines ``body`` (after ``import imports``), for a subprocess to run before
    the code under test, e.g. ``replacing('m.f', 'raise KeyboardInterrupt')``."""
    module, name = where.rsplit(".", 1)
    lines = "".join(f"    {b}\n" for b in body)
    head = f"import {imports}\n" if imports else ""
    return f"{head}import {module}\ndef _replaced(*a, **k):\n{lines}{module}.{name} = _replaced\n"
