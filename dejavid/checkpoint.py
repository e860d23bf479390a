"""Checkpoints of a training run and the RNG states they carry."""
from __future__ import annotations

from pathlib import Path

import torch

from .io import atomic_torch_save
from .model import DejaVid
from .rng import rng_state


def save_checkpoint(path: str | Path, *, model: DejaVid, optimizer, scheduler, config: dict,
                    label_values: list, epoch: int, step: int, running,
                    best_top1: float, history: list[dict]) -> None:
    """``epoch`` is the epoch to continue with and ``step`` the batches of it already done;
    ``running`` the sums of those batches (an object with ``as_dict()``, or None);
    ``config`` the resolved config the run was started with (read back on resume)."""
    state = {
        "model": {"mu": model.mu.detach().cpu(), "theta": model.theta.detach().cpu()},
        "snapshot": ({"mu": model.mu_fixed.cpu(), "theta": model.theta_fixed.cpu()}
                     if step > 0 and model.fixed_path else None),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "config": dict(config),
        "label_values": list(label_values),
        "epoch": epoch,
        "step": step,
        "running": running.as_dict() if running is not None else None,
        "best_top1": best_top1,
        "history": list(history),   # metrics rows of finished epochs (source of metrics.jsonl)
        "rng": rng_state(),
    }
    atomic_torch_save(state, path)


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint file, or a run folder's ``last.pt``; FileNotFoundError / ValueError
    with the path when it is missing or unreadable."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        # Our own checkpoints hold numpy/python RNG states, so they are not weights_only.
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"checkpoint {path} is unreadable ({exc})") from exc


def restore_model(model: DejaVid, ckpt: dict) -> None:
    """Copy a checkpoint's parameters (and its fixed-path snapshot, if any) into ``model``."""
    with torch.no_grad():
        model.mu.copy_(ckpt["model"]["mu"])
        model.theta.copy_(ckpt["model"]["theta"])
    if ckpt.get("snapshot") is not None:
        model.mu_fixed = ckpt["snapshot"]["mu"].to(model.mu.device)
        model.theta_fixed = ckpt["snapshot"]["theta"].to(model.mu.device)
