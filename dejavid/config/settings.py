"""Resolved, validated training settings: the library's side of the config edge.

The scripts read a config dict (:mod:`dejavid.config.files`) and turn it into these
frozen dataclasses once, with :func:`settings_from_config`; everything below the
scripts (centroids, optimiser, training and evaluation passes, :func:`dejavid.fit`)
takes the dataclasses or named arguments, never the dict.  Each dataclass checks its
own values when built, so a library user who builds them directly gets the same
errors as a config file would.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace

from . import defaults as D
from ..alignment.backend import check_backend_name, check_band, check_step_pattern
from ..data.dataset import DataIndex, load_index

STEP_PATTERN_OF_USE_MM = {0: "hv", 1: "hvd"}
LOGIT_HEADS = ("temperature", "zscore")   # DejaVid.head: see dejavid/model/layer.py
CENTROID_INITS = ("resample", "raw")      # what DBA averages: docs/DESIGN.md section 5
# Integer keys that also accept 'auto' (resolved from the training data by resolve_auto).
AUTO_INT_KEYS = ("num_timesteps", "num_epochs")
# centroids_per_class: ALL_SERIES makes every sampled training series a prototype of its own
# (no clustering, no DBA across series; docs/DESIGN.md section 5).
ALL_SERIES = "all"
TUNE_MODES = ("none", "cv")           # config key 'tune' (dejavid.training.tune)
AUTO_K_MIN, AUTO_K_MAX = 8, 128
AUTO_UPDATES, AUTO_EPOCHS_MIN, AUTO_EPOCHS_MAX = 400, 30, 200


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


def _count_or_auto(name: str, value) -> None:
    """ValueError naming ``name`` unless ``value`` is 'auto' or a whole number >= 1."""
    if isinstance(value, str) and value == D.AUTO:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a whole number >= 1 or 'auto', got {value!r}")
    _at_least(name, value, 1)


@dataclass(frozen=True)
class DataSpec:
    """Which splits train and evaluate, and how videos are read."""
    train_split: str = "train"
    eval_split: str = "val"
    in_memory: bool = False          # hold whole splits in RAM
    num_workers: int = 0             # DataLoader worker processes

    def __post_init__(self):
        _at_least("num_workers", self.num_workers, 0)


def check_open_ends(open_ends, band) -> None:
    """ValueError unless ``open_ends`` is a bool, and not True with a warping ``band``."""
    if not isinstance(open_ends, bool):
        raise ValueError(f"open_ends must be true or false, got {open_ends!r}")
    if open_ends and band is not None:
        raise ValueError(f"open_ends cannot be combined with a warping band (band {band}); "
                         f"set band to none or open_ends to false")


@dataclass(frozen=True)
class CentroidSpec:
    """Everything that determines the DBA centroid initialisation (docs/DESIGN.md section 5)."""
    num_timesteps: int | str = D.MODEL["num_timesteps"]   # K, or 'auto' (resolved)
    step_pattern: str = D.STEP_PATTERN
    sample_size_per_class: int = D.CENTROIDS["sample_size_per_class"]
    dba_max_iter: int = D.CENTROIDS["dba_max_iter"]
    seed: int = D.CENTROIDS["centroid_seed"]   # picks the videos sampled per class
    backend: str = D.MODEL["backend"]   # how they are computed (not part of the result)
    centroids_per_class: int | str = 1   # M prototypes per class (k-medoids, then DBA per
    #                                      cluster), or 'all': every sampled series its own
    band: float | None = None        # warping band of the DBA alignments (None: none)
    init: str = "resample"           # DBA over the series resampled to K steps, or 'raw'
    open_ends: bool = False          # DBA matches each series to a stretch of the centroid

    def __post_init__(self):
        check_step_pattern(self.step_pattern)
        check_backend_name(self.backend)
        _count_or_auto("num_timesteps", self.num_timesteps)
        check_band(self.band)
        check_open_ends(self.open_ends, self.band)
        if self.init not in CENTROID_INITS:
            raise ValueError(f"centroid_init must be one of {', '.join(CENTROID_INITS)}, "
                             f"got {self.init!r}")
        if self.centroids_per_class != ALL_SERIES:
            if isinstance(self.centroids_per_class, bool) or \
                    not isinstance(self.centroids_per_class, numbers.Integral):
                raise ValueError(f"centroids_per_class must be a whole number >= 1 or "
                                 f"'{ALL_SERIES}', got {self.centroids_per_class!r}")
            _at_least("centroids_per_class", self.centroids_per_class, 1)
        _at_least("sample_size_per_class", self.sample_size_per_class, 1)
        _at_least("dba_max_iter", self.dba_max_iter, 0)
        check_range("centroid_seed", self.seed, 0, SEED_MAX)

    def resolved(self, train_lengths, resample_inputs: bool = False) -> "CentroidSpec":
        """This spec with ``num_timesteps: 'auto'`` replaced by :func:`auto_num_timesteps`
        of the training series' lengths (for a model with ``resample_inputs`` or not)."""
        if self.num_timesteps != D.AUTO:
            return replace(self, num_timesteps=int(self.num_timesteps))
        return replace(self, num_timesteps=auto_num_timesteps(train_lengths, resample_inputs))


@dataclass(frozen=True)
class ModelSpec:
    """How the :class:`dejavid.DejaVid` layer aligns."""
    step_pattern: str = D.STEP_PATTERN
    use_fixed_path: bool = D.MODEL["use_fixed_path"]   # paths from a per-epoch parameter snapshot
    w_one_init: bool = D.MODEL["w_one_init"]   # theta = 0 instead of theta ~ N(0, 1)
    backend: str = D.MODEL["backend"]
    logit_head: str = D.MODEL["logit_head"]   # temperature (learned -d / tau) or zscore (paper)
    band: float | None = None        # warping band of the alignments (None: none, the paper's)
    resample_inputs: bool = False    # each sample resampled to K steps first (off: the paper's)
    open_ends: bool = False          # each sample matched to a stretch of each centroid

    def __post_init__(self):
        check_step_pattern(self.step_pattern)
        check_backend_name(self.backend)
        check_band(self.band)
        check_open_ends(self.open_ends, self.band)
        if not isinstance(self.resample_inputs, bool):
            raise ValueError(f"resample_inputs must be true or false, got {self.resample_inputs!r}")
        if self.logit_head not in LOGIT_HEADS:
            raise ValueError(f"logit_head must be one of {', '.join(LOGIT_HEADS)}, "
                             f"got {self.logit_head!r}")


@dataclass(frozen=True)
class OptimSpec:
    """AdamW groups (theta at lr, mu at lr / ms_lr_div) and the per-epoch schedule."""
    lr: float = D.TRAINING["lr"]
    ms_lr_div: float = D.TRAINING["ms_lr_div"]
    weight_decay: float = D.TRAINING["weight_decay"]
    betas: tuple = (0.9, 0.999)
    mu_betas: tuple = (0.9, 0.999)
    warmup_epochs: int = D.TRAINING["warmup_epochs"]
    min_lr_ratio: float = D.TRAINING["min_lr_ratio"]
    freeze_centroids: bool = D.MODEL["freeze_centroids"]   # mu: no gradient, no optimizer group
    freeze_weights: bool = D.MODEL["freeze_weights"]   # theta: no gradient, no optimizer group

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
    num_epochs: int | str = D.TRAINING["num_epochs"]   # or 'auto' (resolved)
    batch_size: int = D.TRAINING["batch_size"]   # global batch (split across ranks under torchrun)
    eval_batch_size: int = 0         # 0: batch_size
    seed: int = D.TRAINING["seed"]   # batch order and theta's initialisation
    num_workers: int = 0
    std_eps: float = D.MODEL["std_eps"]   # epsilon of the per-sample logit standardisation

    def __post_init__(self):
        _count_or_auto("num_epochs", self.num_epochs)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("eval_batch_size", self.eval_batch_size, 0)
        _at_least("num_workers", self.num_workers, 0)
        check_range("seed", self.seed, 0, SEED_MAX)
        check_range("std_eps", self.std_eps, 0, above=True)
        if self.eval_batch_size == 0:
            object.__setattr__(self, "eval_batch_size", self.batch_size)

    def resolved(self, num_train: int) -> "LoopSpec":
        """This spec with ``num_epochs: 'auto'`` replaced by :func:`auto_num_epochs`."""
        if self.num_epochs != D.AUTO:
            return replace(self, num_epochs=int(self.num_epochs))
        return replace(self, num_epochs=auto_num_epochs(num_train, self.batch_size))


@dataclass(frozen=True)
class TrainSettings:
    """All of :func:`dejavid.fit`'s settings, grouped by the part that reads them."""
    data: DataSpec = field(default_factory=DataSpec)
    centroids: CentroidSpec = field(default_factory=CentroidSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    optim: OptimSpec = field(default_factory=OptimSpec)
    loop: LoopSpec = field(default_factory=LoopSpec)

    def __post_init__(self):
        if self.model.resample_inputs and self.centroids.init == "raw":
            raise ValueError("resample_inputs resamples every series to K steps, while "
                             "centroid_init: raw averages them at their own time scale; "
                             "use one of the two")

    def resolved(self, train_lengths) -> "TrainSettings":
        """These settings with every 'auto' value derived from the lengths of the training
        series (one per series): what :func:`dejavid.fit` trains with."""
        lengths = list(train_lengths)
        return replace(self,
                       centroids=self.centroids.resolved(lengths, self.model.resample_inputs),
                       loop=self.loop.resolved(len(lengths)))


def step_pattern_of(use_mm: int) -> str:
    """The config's ``use_mm`` (0 or 1) as a step pattern ('hv' or 'hvd')."""
    if use_mm not in STEP_PATTERN_OF_USE_MM:
        raise ValueError(f"use_mm must be 0 or 1, got {use_mm}")
    return STEP_PATTERN_OF_USE_MM[use_mm]


def band_of(value) -> float | None:
    """The config's ``band`` ('none' or a fraction > 0) as the alignment's band (None: none)."""
    if value is None or value == "none":
        return None
    if isinstance(value, str):
        raise ValueError(f"config key 'band' must be none or a fraction > 0 (e.g. 0.1), "
                         f"got {value!r}")
    return check_band(value)


def settings_from_config(cfg: dict) -> TrainSettings:
    """The one place a resolved config dict (:func:`dejavid.config.files.load_config`) becomes
    settings: the step pattern and every derived value are resolved here, once."""
    unresolved = [k for k in AUTO_INT_KEYS if cfg[k] == "auto"]
    if unresolved:
        raise ValueError(f"{', '.join(unresolved)} still 'auto': resolve the config with the "
                         f"training data first (index_from_config or resolve_auto)")
    pattern = step_pattern_of(cfg["use_mm"])
    band = band_of(cfg["band"])
    return TrainSettings(
        data=DataSpec(cfg["train_split"], cfg["eval_split"], cfg["in_memory"], cfg["num_workers"]),
        centroids=CentroidSpec(cfg["num_timesteps"], pattern, cfg["sample_size_per_class"],
                               cfg["dba_max_iter"], cfg["centroid_seed"], cfg["backend"],
                               cfg["centroids_per_class"], band, cfg["centroid_init"],
                               cfg["open_ends"]),
        model=ModelSpec(pattern, cfg["use_fixed_path"], cfg["w_one_init"], cfg["backend"],
                        cfg["logit_head"], band, cfg["resample_inputs"], cfg["open_ends"]),
        optim=OptimSpec(cfg["lr"], cfg["ms_lr_div"], cfg["weight_decay"], tuple(cfg["betas"]),
                        tuple(cfg["mu_betas"]), cfg["warmup_epochs"], cfg["min_lr_ratio"],
                        cfg["freeze_centroids"], cfg["freeze_weights"]),
        loop=LoopSpec(cfg["num_epochs"], cfg["batch_size"], cfg["eval_batch_size"], cfg["seed"],
                      cfg["num_workers"], cfg["std_eps"]))


def median_length(train_lengths) -> int:
    """The median of the training series' lengths (the upper middle's mean rounded up)."""
    lengths = sorted(int(t) for t in train_lengths)
    if not lengths:
        raise ValueError("no training videos to derive num_timesteps from")
    half = len(lengths) // 2
    return lengths[half] if len(lengths) % 2 else (lengths[half - 1] + lengths[half] + 1) // 2


def resampled_num_timesteps(K: int, train_lengths) -> int:
    """Centroid steps for a model that resamples every series to its K steps
    (``resample_inputs``), given the K of one that aligns the series as they are:
    round(sqrt(K * median)) when the median length is above K, else K.

    The unresampled model aligns K x T grids, K * median cells for a median series; the
    resampled one aligns K' x K' grids, so K' = sqrt(K * median) costs about as much per
    pair and keeps more of a long series' detail than K' = K (docs/DESIGN.md section
    4.2.2 has the measurements)."""
    median = median_length(train_lengths)
    return int(round(math.sqrt(int(K) * median))) if median > int(K) else int(K)


def auto_num_timesteps(train_lengths, resample_inputs: bool = False) -> int:
    """K for ``num_timesteps: auto``: the median training length, clipped to [8, 128]; with
    ``resample_inputs``, :func:`resampled_num_timesteps` of that (sqrt(128 * median) for a
    median above 128).

    A centroid step per typical sample step keeps the temporal detail of series
    (JapaneseVowels: 7-29 steps); the upper bound caps the cost, which grows as
    K * T per (sample, class) pair, for long ones (docs/results.md, "Accuracy on six public
    data sets", has the measurements behind 128).
    """
    K = max(AUTO_K_MIN, min(AUTO_K_MAX, median_length(train_lengths)))
    return resampled_num_timesteps(K, train_lengths) if resample_inputs else K


def auto_num_epochs(num_train: int, batch_size: int) -> int:
    """Epochs for ``num_epochs: auto``: enough for 400 AdamW updates, clipped to [30, 200].

    The optimiser's progress is counted in updates, not passes: 30 epochs are
    30 updates on 20 training videos with batch 32 but 9000 on 10 000 videos.
    """
    steps_per_epoch = -(-num_train // batch_size)
    epochs = -(-AUTO_UPDATES // steps_per_epoch)
    return max(AUTO_EPOCHS_MIN, min(AUTO_EPOCHS_MAX, epochs))


def resolve_auto(cfg: dict, train_lengths) -> list[str]:
    """Replace the 'auto' values of ``cfg`` (in place) by values from the training data.

    Returns one line per resolved key, for the log; the resolved config is what
    is printed and saved in checkpoints.
    """
    notes = []
    if cfg["num_timesteps"] == "auto":
        resample = bool(cfg.get("resample_inputs", False))
        cfg["num_timesteps"] = auto_num_timesteps(train_lengths, resample)
        rule = (f"median training length, clipped to [{AUTO_K_MIN}, {AUTO_K_MAX}]; with "
                f"resample_inputs above {AUTO_K_MAX}: sqrt({AUTO_K_MAX} * median)"
                if resample else
                f"median training length, clipped to [{AUTO_K_MIN}, {AUTO_K_MAX}]")
        notes.append(f"num_timesteps: auto -> {cfg['num_timesteps']} ({rule})")
    if cfg["num_epochs"] == "auto":
        cfg["num_epochs"] = auto_num_epochs(len(train_lengths), cfg["batch_size"])
        notes.append(f"num_epochs: auto -> {cfg['num_epochs']} ({AUTO_UPDATES} updates of batch "
                     f"{cfg['batch_size']} over {len(train_lengths)} training videos, clipped to "
                     f"[{AUTO_EPOCHS_MIN}, {AUTO_EPOCHS_MAX}])")
    return notes


def index_from_config(cfg: dict, progress: bool = True, log=None,
                      verify: bool = False) -> DataIndex:
    """:func:`dejavid.data.dataset.load_index` with the data and feature-store keys of a config dict;
    ``verify`` re-reads every file against the store (``--verify-data``).

    Also resolves the config's data-derived values in place (``num_timesteps`` and
    ``num_epochs`` set to ``auto``: :func:`resolve_auto`, each resolution passed to
    ``log``), so that the config printed and saved in checkpoints holds the values used."""
    index = load_index(cfg["id2feats"], cfg["id2splits"], cfg["id2labels"], cfg["id2fname"],
                       train_split=cfg["train_split"], num_classes=cfg["num_classes"],
                       feature_size=cfg["feature_size"], standardize=cfg["standardize"],
                       progress=progress, store=cfg["store"], store_dtype=cfg["store_dtype"],
                       cache_dir=cfg["cache_dir"], verify=verify)
    for note in resolve_auto(cfg, index.lengths[index.rows(cfg["train_split"])]):
        if log is not None:
            log(note)
    return index
