"""Resolved, validated training settings: the library's side of the config edge.

The scripts read a config dict (:mod:`dejavid.config`) and turn it into these
frozen dataclasses once, with :func:`settings_from_config`; everything below the
scripts (centroids, optimiser, training and evaluation passes, :func:`dejavid.fit`)
takes the dataclasses or named arguments, never the dict.  Each dataclass checks its
own values when built, so a library user who builds them directly gets the same
errors as a config file would.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .backend import check_backend_name, check_step_pattern
from .data import DataIndex, load_index

STEP_PATTERN_OF_USE_MM = {0: "hv", 1: "hvd"}


SEED_MAX = 2**32 - 1   # numpy's global seed range


def check_range(name: str, value, low=None, high=None, *, above: bool = False,
                below: bool = False) -> None:
    """ValueError naming ``name`` unless ``value`` is a finite number in [low, high]
    (``above``: strictly above ``low``; ``below``: strictly below ``high``)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if low is not None and (value <= low if above else value < low):
        raise ValueError(f"{name} must be {'>' if above else '>='} {low}, got {value}")
    if high is not None and (value >= high if below else value > high):
        raise ValueError(f"{name} must be {'<' if below else '<='} {high}, got {value}")


def _at_least(name: str, value, low) -> None:
    check_range(name, value, low)


@dataclass(frozen=True)
class DataSpec:
    """Which splits train and evaluate, and how videos are read."""
    train_split: str = "train"
    eval_split: str = "val"
    in_memory: bool = False          # hold whole splits in RAM
    num_workers: int = 0             # DataLoader worker processes

    def __post_init__(self):
        _at_least("num_workers", self.num_workers, 0)


@dataclass(frozen=True)
class CentroidSpec:
    """Everything that determines the DBA centroid initialisation (DESIGN section 5)."""
    num_timesteps: int = 64          # K
    step_pattern: str = "hv"
    sample_size_per_class: int = 50
    dba_max_iter: int = 100
    seed: int = 0                    # picks the videos sampled per class
    backend: str = "auto"            # how they are computed (not part of the result)

    def __post_init__(self):
        check_step_pattern(self.step_pattern)
        check_backend_name(self.backend)
        _at_least("num_timesteps", self.num_timesteps, 1)
        _at_least("sample_size_per_class", self.sample_size_per_class, 1)
        _at_least("dba_max_iter", self.dba_max_iter, 0)
        check_range("centroid_seed", self.seed, 0, SEED_MAX)


@dataclass(frozen=True)
class ModelSpec:
    """How the :class:`dejavid.DejaVid` layer aligns."""
    step_pattern: str = "hv"
    use_fixed_path: bool = True      # paths from a per-epoch parameter snapshot
    w_one_init: bool = False         # theta = 0 instead of theta ~ N(0, 1)
    backend: str = "auto"

    def __post_init__(self):
        check_step_pattern(self.step_pattern)
        check_backend_name(self.backend)


@dataclass(frozen=True)
class OptimSpec:
    """AdamW groups (theta at lr, mu at lr / ms_lr_div) and the per-epoch schedule."""
    lr: float = 1e-3
    ms_lr_div: float = 3.0
    weight_decay: float = 0.0
    betas: tuple = (0.9, 0.999)
    mu_betas: tuple = (0.9, 0.999)
    warmup_epochs: int = 0
    min_lr_ratio: float = 0.0
    freeze_centroids: bool = False   # mu gets no gradient and no optimizer group
    freeze_weights: bool = False     # theta gets no gradient and no optimizer group

    def __post_init__(self):
        check_range("lr", self.lr, 0, above=True)
        check_range("ms_lr_div", self.ms_lr_div, 0, above=True)
        check_range("weight_decay", self.weight_decay, 0)
        check_range("min_lr_ratio", self.min_lr_ratio, 0, 1)
        if self.freeze_centroids and self.freeze_weights:
            raise ValueError("freeze_centroids and freeze_weights are both true: nothing would "
                             "be trained; set one of them to false")
        _at_least("warmup_epochs", self.warmup_epochs, 0)
        for name in ("betas", "mu_betas"):
            value = tuple(float(b) for b in getattr(self, name))
            if len(value) != 2:
                raise ValueError(f"{name} must be two numbers, got {getattr(self, name)!r}")
            for b in value:
                check_range(f"each of {name}", b, 0, 1, below=True)
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class LoopSpec:
    """The epoch loop: batches, seed, loss epsilon."""
    num_epochs: int = 30
    batch_size: int = 384            # global batch (split across ranks under torchrun)
    eval_batch_size: int = 0         # 0: batch_size
    seed: int = 0                    # batch order and theta's initialisation
    num_workers: int = 0
    std_eps: float = 1e-6            # epsilon of the per-sample logit standardisation

    def __post_init__(self):
        _at_least("num_epochs", self.num_epochs, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("eval_batch_size", self.eval_batch_size, 0)
        _at_least("num_workers", self.num_workers, 0)
        check_range("seed", self.seed, 0, SEED_MAX)
        check_range("std_eps", self.std_eps, 0, above=True)
        if self.eval_batch_size == 0:
            object.__setattr__(self, "eval_batch_size", self.batch_size)


@dataclass(frozen=True)
class TrainSettings:
    """All of :func:`dejavid.fit`'s settings, grouped by the part that reads them."""
    data: DataSpec = field(default_factory=DataSpec)
    centroids: CentroidSpec = field(default_factory=CentroidSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    optim: OptimSpec = field(default_factory=OptimSpec)
    loop: LoopSpec = field(default_factory=LoopSpec)


def step_pattern_of(use_mm: int) -> str:
    """The config's ``use_mm`` (0 or 1) as a step pattern ('hv' or 'hvd')."""
    if use_mm not in STEP_PATTERN_OF_USE_MM:
        raise ValueError(f"use_mm must be 0 or 1, got {use_mm}")
    return STEP_PATTERN_OF_USE_MM[use_mm]


def settings_from_config(cfg: dict) -> TrainSettings:
    """The one place a resolved config dict (:func:`dejavid.config.load_config`) becomes
    settings: the step pattern and every derived value are resolved here, once."""
    pattern = step_pattern_of(cfg["use_mm"])
    return TrainSettings(
        data=DataSpec(cfg["train_split"], cfg["eval_split"], cfg["in_memory"], cfg["num_workers"]),
        centroids=CentroidSpec(cfg["num_timesteps"], pattern, cfg["sample_size_per_class"],
                               cfg["dba_max_iter"], cfg["centroid_seed"], cfg["backend"]),
        model=ModelSpec(pattern, cfg["use_fixed_path"], cfg["w_one_init"], cfg["backend"]),
        optim=OptimSpec(cfg["lr"], cfg["ms_lr_div"], cfg["weight_decay"], tuple(cfg["betas"]),
                        tuple(cfg["mu_betas"]), cfg["warmup_epochs"], cfg["min_lr_ratio"],
                        cfg["freeze_centroids"], cfg["freeze_weights"]),
        loop=LoopSpec(cfg["num_epochs"], cfg["batch_size"], cfg["eval_batch_size"], cfg["seed"],
                      cfg["num_workers"], cfg["std_eps"]))


def index_from_config(cfg: dict, progress: bool = True, verify: bool = False) -> DataIndex:
    """:func:`dejavid.data.load_index` with the data and feature-store keys of a config dict;
    ``verify`` re-reads every file against the store (``--verify-data``)."""
    return load_index(cfg["id2feats"], cfg["id2splits"], cfg["id2labels"], cfg["id2fname"],
                      train_split=cfg["train_split"], num_classes=cfg["num_classes"],
                      feature_size=cfg["feature_size"], progress=progress, store=cfg["store"],
                      store_dtype=cfg["store_dtype"], cache_dir=cfg["cache_dir"], verify=verify)
