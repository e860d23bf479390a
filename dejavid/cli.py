"""Shared command-line plumbing of the entry scripts."""
from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import torch

from .config import DEFAULTS, load_config


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=description,
        epilog="Any config key can be overridden with --key value; keys: " + ", ".join(sorted(DEFAULTS)))
    p.add_argument("--config", help="YAML config (configs/<dataset>.yaml)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def parse(p: argparse.ArgumentParser, argv=None):
    args, rest = p.parse_known_args(argv)
    return args, rest


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_run_dir(cfg: dict) -> Path:
    name = cfg["run_name"] or f"{cfg['name'] or 'dejavid'}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(cfg["output_dir"]) / name


__all__ = ["parser", "parse", "resolve_device", "seed_everything", "default_run_dir", "load_config"]
