"""Checkpoints of a training run and the RNG states they carry.

A checkpoint holds tensors, numbers, strings, lists, tuples and dicts only, and is read
with ``torch.load(weights_only=True)``: a file that needs anything else (a crafted file,
or one written before this format) is refused, because unpickling arbitrary objects can
run code.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_torch_save
from ..model.layer import DejaVid
from .rng import plain_rng_state, rng_state

# 2: RNG states as tensors/numbers (weights_only), training-data record.  Files without
# a version hold pickled numpy/python RNG states and are refused by load_checkpoint.
FORMAT_VERSION = 2


def _plain(value):
    """numpy scalars (labels from arrays) as python numbers, which weights_only accepts."""
    return value.item() if isinstance(value, np.generic) else value


def save_checkpoint(path: str | Path, *, model: DejaVid, optimizer, scheduler, config: dict,
                    label_values: list, epoch: int, step: int, running,
                    best_top1: float, history: list[dict], data: dict | None = None,
                    feature_stats: dict | None = None, extraction: dict | None = None) -> None:
    """``epoch`` is the epoch to continue with and ``step`` the batches of it already done;
    ``running`` the sums of those batches (an object with ``as_dict()``, or None);
    ``config`` the resolved config the run was started with (read back on resume);
    ``data`` what the run trained and evaluated on (:func:`dejavid.training.run.data_record`),
    checked when it is resumed; ``feature_stats`` the training split's per-feature
    statistics the model expects its inputs standardised with (``standardize``), or None;
    ``extraction`` how the training features were made from videos (:func:`extraction_record`),
    which ``predict.py`` rebuilds the encoder from, or None."""
    state = {
        "format": FORMAT_VERSION,
        "model": {"mu": model.mu.detach().cpu(), "theta": model.theta.detach().cpu()},
        "head": {k: v.detach().cpu() for k, v in model.head.state_dict().items()},
        **({"pool": {k: v.detach().cpu() for k, v in model.pool.state_dict().items()}}
           if model.pool is not None else {}),
        "standardize": feature_stats,
        "snapshot": ({"mu": model.mu_fixed.cpu(), "theta": model.theta_fixed.cpu()}
                     if step > 0 and model.fixed_path else None),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "config": {k: _plain(v) for k, v in dict(config).items()},
        "label_values": [_plain(v) for v in label_values],
        "epoch": epoch,
        "step": step,
        "running": running.as_dict() if running is not None else None,
        "best_top1": best_top1,
        "history": list(history),   # metrics rows of finished epochs (source of metrics.jsonl)
        "rng": rng_state(),
        "data": data,
        "extraction": extraction,
    }
    atomic_torch_save(state, path)


def extraction_record(config: dict | None) -> dict | None:
    """``{"settings": extraction.json, "classes": classes.json}`` of the folder
    ``config['id2feats']`` when extract_tse.py wrote it (encoder, sampling, dtype and the
    class names of the label ids), so that a checkpoint can classify new videos with the
    encoder its features came from; None for data made any other way (plain JSON values:
    a checkpoint stays readable with ``weights_only=True``)."""
    if not config or not config.get("id2feats"):
        return None
    folder = Path(config["id2feats"])
    if not (folder / "extraction.json").is_file():
        return None
    classes = folder / "classes.json"
    try:
        return {"settings": json.loads((folder / "extraction.json").read_text()),
                "classes": json.loads(classes.read_text()) if classes.is_file() else None}
    except ValueError as exc:
        raise ValueError(f"{folder}: extraction.json or classes.json is not valid JSON ({exc}); "
                         f"extract the features again, or remove both files to train without "
                         f"them (predict.py then needs the extraction given explicitly)") from None


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint file, or a run folder's latest checkpoint, read with ``weights_only=True``.

    For a folder that is ``last.pt``, or ``best.pt`` when that one is further on: each
    improved epoch writes best.pt first and then last.pt with the same state, so a crash
    between the two writes leaves the epoch's state in best.pt only.

    FileNotFoundError when it is missing; ValueError when it is unreadable or holds
    objects that only a full unpickler could rebuild (refused: that could run code)."""
    path = Path(path)
    if path.is_dir():
        last, best = path / "last.pt", path / "best.pt"
        if not best.is_file():
            return load_checkpoint(last)
        best_ck = load_checkpoint(best)
        last_ck = load_checkpoint(last) if last.is_file() else None
        if last_ck is None or (best_ck["epoch"], best_ck["step"]) > (last_ck["epoch"],
                                                                   last_ck["step"]):
            return best_ck
        return last_ck
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not _is_torch_archive(path):
        raise ValueError(f"{path} is not a dejavid checkpoint: it is not a file written by "
                         f"torch.save (checkpoints are the last.pt and best.pt of a run folder, "
                         f"or a file written by import_original.py); check the path")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text:
            raise ValueError(_unsafe_message(path)) from None
        raise ValueError(f"checkpoint {path} is unreadable ({text.splitlines()[0] if text else exc!r})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path} is not a dejavid checkpoint (no model/config entries)")
    return ckpt


def _is_torch_archive(path: Path) -> bool:
    """Whether ``path`` is a torch.save zip archive (what every dejavid checkpoint is),
    judged from the archive's member names only: nothing in it is unpickled."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/data.pkl") or n == "data.pkl" for n in z.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


# The globals an earlier-format dejavid checkpoint needs: numpy's RNG state (an array)
# and numpy scalars.  Only a file needing nothing else is offered the conversion.
_LEGACY_GLOBALS = {f"numpy.{m}multiarray.{f}" for m in ("core.", "_core.")
                   for f in ("_reconstruct", "scalar")} | {"numpy.dtype", "numpy.ndarray"}


def _unsafe_message(path: Path) -> str:
    """Why a torch archive that ``weights_only`` refuses is refused, and (only for what an
    earlier dejavid wrote) how to convert it.  The globals are listed without unpickling."""
    try:
        needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:
        needed = {"(unreadable)"}
    head = (f"checkpoint {path} holds objects other than tensors and plain values; loading it "
            f"could run code, so it is refused.")
    if needed and all(g in _LEGACY_GLOBALS or g.startswith("numpy.dtypes.") for g in needed):
        return (head + f" It looks like a checkpoint of an earlier dejavid (before checkpoint "
                f"format {FORMAT_VERSION}, which pickled the numpy RNG state). If you wrote "
                f"this file yourself and trust it, convert it once with: python -c \"from "
                f"dejavid.training.checkpoint import upgrade_checkpoint; "
                f"upgrade_checkpoint('{path}')\"")
    return (head + f" It needs {', '.join(sorted(needed)[:5])}, which no dejavid checkpoint "
            f"holds; do not load it with a full unpickler unless you know who made it")


def upgrade_checkpoint(path: str | Path) -> None:
    """Rewrite a checkpoint of the earlier format (pickled RNG states) in the current one.

    This unpickles the file with ``weights_only=False``, which runs any code a crafted file
    names: call it only on files you wrote yourself."""
    path = Path(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    rng = ckpt["rng"]
    ckpt["rng"] = plain_rng_state(rng["torch"], rng["numpy"], rng["python"])
    ckpt["format"] = FORMAT_VERSION
    ckpt.setdefault("data", None)
    ckpt["config"] = {k: _plain(v) for k, v in ckpt["config"].items()}
    ckpt["label_values"] = [_plain(v) for v in ckpt["label_values"]]
    atomic_torch_save(ckpt, path)


def restore_model(model: DejaVid, ckpt: dict) -> None:
    """Copy a checkpoint's parameters (and its fixed-path snapshot, if any) into ``model``."""
    with torch.no_grad():
        model.mu.copy_(ckpt["model"]["mu"])
        model.theta.copy_(ckpt["model"]["theta"])
        if ckpt.get("head"):
            model.head.load_state_dict(ckpt["head"])
        if ckpt.get("pool"):
            model.pool.load_state_dict(ckpt["pool"])
    if ckpt.get("snapshot") is not None:
        model.mu_fixed = ckpt["snapshot"]["mu"].to(model.mu.device)
        model.theta_fixed = ckpt["snapshot"]["theta"].to(model.mu.device)
