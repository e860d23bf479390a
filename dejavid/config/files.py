"""One source of defaults, one override path.

The values shared with the settings dataclasses and the estimator come from
:mod:`dejavid.config.defaults`; the keys here only add where data and outputs live.

A YAML file per dataset in ``configs/`` sets keys of :data:`DEFAULTS`; command
line ``--key value`` pairs override them.  Unknown keys and values whose type
does not match the default are errors that list what is valid.
"""
from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from . import defaults as D
from ..data.dataset import SPLITS
from .settings import (ALL_SERIES, AUTO_INT_KEYS, CENTROID_INITS, LOGIT_HEADS, SEED_MAX,
                       STEP_PATTERN_OF_USE_MM, TUNE_MODES, band_of, check_range,
                       step_pattern_of)

DEFAULTS: dict[str, Any] = {
    # --- data (docs/DESIGN.md section 1); relative paths are taken from the working directory
    "name": "",                      # dataset name, used for run folders
    "id2feats": "",                  # root folder of per-video tensors
    "id2splits": "",                 # pickled {video_id: 'train'|'val'|'test'}
    "id2labels": "",                 # pickled {video_id: int}
    "id2fname": "",                  # pickled {video_id: file name relative to id2feats}
    "train_split": "train",
    "eval_split": "val",             # 'val' or 'test'
    "num_classes": 0,                # 0: take from the data; otherwise must match it
    "feature_size": 0,               # 0: take from the data; otherwise must match it
    "in_memory": False,              # hold whole splits in RAM
    "store": True,                   # read tensors from the packed feature store in cache_dir
                                     # (built once from the files; docs/usage.md "Large data sets")
    "store_dtype": "float32",        # float32 | float16 | bfloat16: the store's precision
    "store_on_device": False,        # copy each split of the store to the GPU once, if it fits
    "num_workers": 0,                # DataLoader worker processes
    # --- model
    "num_timesteps": D.MODEL["num_timesteps"],  # K, centroid length; auto: from the
                                     # training lengths (median, clipped to [8, 128])
    "use_mm": 0,                     # 0: step pattern 'hv'; 1: 'hvd' (adds the diagonal)
    "band": "none",                  # none, or a warping band: |i/(K-1) - j/(T-1)| <= fraction
                                     # (docs/DESIGN.md section 3); none is the paper's
    "open_ends": False,              # match each sample in full to a stretch of each centroid
                                     # (docs/DESIGN.md section 3.3.2); false is the paper's
    "resample_inputs": False,        # resample every sample to K steps before it is aligned
                                     # (docs/DESIGN.md section 4.2.2); false is the paper's
    "centroids_per_class": 1,        # M prototype series per class, soft minimum over them
                                     # (docs/DESIGN.md section 5); 1 is the paper's
    "use_fixed_path": D.MODEL["use_fixed_path"],  # paths from a per-epoch parameter snapshot
    "w_one_init": D.MODEL["w_one_init"],  # weights start at 1 (theta = 0), not theta ~ N(0, 1)
    "freeze_centroids": D.MODEL["freeze_centroids"],  # train the weights only (mu stays at
                                     # its DBA initialisation)
    "freeze_weights": D.MODEL["freeze_weights"],  # train the centroids only (theta stays at
                                     # its initial value; with w_one_init that is w = 1); not
                                     # with freeze_centroids
    "logit_columns": 0,              # the last C features of each step are the encoder's class
                                     # logits (C = num_classes); 0: none
    "logit_head": D.MODEL["logit_head"],  # temperature: -d / tau, tau learned (any C >= 2);
                                     # zscore: the paper's per-sample standardisation
    "std_eps": D.MODEL["std_eps"],   # epsilon of the zscore head
    "standardize": D.MODEL["standardize"],  # per-feature mean/std of the training split
    "backend": D.MODEL["backend"],   # auto | ref | numba | cuda
    "device": D.MODEL["device"],     # auto | cpu | cuda | cuda:N
    # --- centroids (docs/DESIGN.md section 5)
    "sample_size_per_class": D.CENTROIDS["sample_size_per_class"],
    "dba_max_iter": D.CENTROIDS["dba_max_iter"],
    "centroid_seed": D.CENTROIDS["centroid_seed"],
    "centroid_init": "resample",     # resample: DBA over the series resampled to K steps (the
                                     # paper's); raw: over the series as they are
    "cache_dir": "cache",
    # --- training (docs/DESIGN.md section 6)
    "num_epochs": D.TRAINING["num_epochs"],  # auto: enough epochs for AUTO_UPDATES AdamW
                                     # updates, clipped to [AUTO_EPOCHS_MIN, AUTO_EPOCHS_MAX]
    "batch_size": D.TRAINING["batch_size"],  # global batch (split across ranks under torchrun)
    "eval_batch_size": 0,            # 0: same as batch_size
    "lr": D.TRAINING["lr"],          # theta's learning rate
    "ms_lr_div": D.TRAINING["ms_lr_div"],  # mu's learning rate is lr / ms_lr_div
    "weight_decay": D.TRAINING["weight_decay"],
    "betas": [0.9, 0.999],           # AdamW betas of theta
    "mu_betas": [0.9, 0.999],        # AdamW betas of mu
    "warmup_epochs": D.TRAINING["warmup_epochs"],  # linear warmup before the cosine schedule
    "min_lr_ratio": D.TRAINING["min_lr_ratio"],  # cosine floor as a fraction of the base rate
    "seed": D.TRAINING["seed"],
    # --- settings chosen on the training split (docs/usage.md "Tuning")
    "tune": D.TUNE_ABSENT,           # none | cv: pick step pattern, band or open ends, and
                                     # prototypes by stratified k-fold cross-validation,
                                     # then train;
                                     # configs/default.yaml and DejaVidClassifier() say cv
    "tune_folds": D.TUNING["tune_folds"],  # k (fewer when a class has fewer series)
    "output_dir": "runs",
    "run_name": "",                  # default: <name>-<timestamp>
    "tensorboard": "",               # folder for TensorBoard scalars per epoch; '' off
}

# Keys added after checkpoints were first written, with the value that reproduces the
# behaviour of those older runs (a checkpoint without the key is read with this value).
LEGACY_VALUES = {"logit_head": "zscore", "standardize": False}


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads '1e-4' and '3E5' as floats.

    PyYAML follows YAML 1.1, where a float needs a dot ('1.0e-4'), so the
    notation every paper and shell user writes would arrive as a string.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def _construct_mapping_once(loader, node, deep=False):
    """A mapping whose keys are unique: PyYAML keeps the last of a repeated key silently,
    so a config naming a key twice would train with a value its reader may not see."""
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice (lines {seen[key] + 1} and "
                f"{key_node.start_mark.line + 1}); keep one", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_once)


def _yaml_load(text):
    return yaml.load(text, Loader=_Loader)


# Keys that may change when resuming a run without breaking exactness (where data and
# outputs live, how they are computed); every other key is part of what the run computes.
RESUME_OVERRIDABLE = frozenset({"num_workers", "device", "backend", "in_memory", "output_dir",
                                "id2feats", "id2splits", "id2labels", "id2fname", "cache_dir",
                                "store_on_device", "tensorboard"})


def _valid_keys() -> str:
    return ", ".join(sorted(DEFAULTS))


def _check_value(key: str, value: Any, source: str) -> Any:
    default = DEFAULTS[key]
    want = type(default)
    where = f"config key '{key}' (from {source})"
    if key == "band":   # 'none' or a number: the one key of two types
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(f"{where} must be none or a fraction > 0, got {value!r}")
        band_of(value)
        return value if isinstance(value, str) else float(value)
    if key == "centroids_per_class" and value == ALL_SERIES:
        return value
    if key in AUTO_INT_KEYS:
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer or 'auto', got {value!r}")
        return value
    if want is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true/false, got {value!r}")
        return value
    if want is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer, got {value!r}")
        return value
    if want is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be a number, got {value!r}")
        return float(value)
    if want is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
        return value
    if want is list:
        if (not isinstance(value, list) or len(value) != len(default)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise ValueError(f"{where} must be a list of {len(default)} numbers, got {value!r}")
        return [float(v) for v in value]
    raise AssertionError(f"unhandled default type for {key}")


def _apply(cfg: dict, items: Iterable[tuple[str, Any]], source: str) -> None:
    for key, value in items:
        if key not in DEFAULTS:
            close = difflib.get_close_matches(key, DEFAULTS, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(f"unknown config key '{key}' (from {source}); {hint}valid keys: "
                             f"{_valid_keys()}")
        cfg[key] = _check_value(key, value, source)


def parse_overrides(args: list[str]) -> list[tuple[str, Any]]:
    """['--lr', '0.01', '--use_fixed_path', 'false'] -> [('lr', 0.01), ...] (values parsed as YAML)."""
    out = []
    i = 0
    while i < len(args):
        tok = args[i]
        if not tok.startswith("--"):
            raise ValueError(f"expected --key value, got {tok!r}; valid keys: {_valid_keys()}")
        key = tok[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ValueError(f"--{key} needs a value")
            raw = args[i + 1]
            i += 2
        key = key.replace("-", "_")
        try:
            value = _yaml_load(raw)
        except yaml.YAMLError:
            value = raw
        if (isinstance(DEFAULTS.get(key), str) and key not in AUTO_INT_KEYS
                and key != "band" and not isinstance(value, str)):
            value = raw  # e.g. a run name that looks like a number
        out.append((key, value))
    return out


def load_config(path: str | Path | None, overrides: list[str] | None = None,
                base: dict | None = None) -> dict[str, Any]:
    """Defaults <- ``base`` (a saved config) <- YAML file <- command-line overrides."""
    cfg = copy.deepcopy(DEFAULTS)
    if base is not None:
        _apply(cfg, {**LEGACY_VALUES, **base}.items(), "checkpoint")
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            with open(path) as fh:
                data = _yaml_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"config file {path} is not valid YAML: "
                             f"{' '.join(str(exc).split())}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"config file {path} is not a text file (byte {exc.start} is not "
                             f"UTF-8); give the YAML config (configs/<dataset>.yaml)") from None
        if not isinstance(data, dict):
            raise ValueError(f"config file {path} must hold a mapping of key: value")
        _apply(cfg, data.items(), str(path))
        if not cfg["name"]:
            cfg["name"] = path.stem
    _apply(cfg, parse_overrides(overrides or []), "command line")
    validate(cfg)
    return cfg


def validate(cfg: dict) -> None:
    """Value checks beyond types: every numeric key's range (finite, within bounds), the
    choices of the string keys, and combinations; each message names the key."""
    for key in AUTO_INT_KEYS:
        if cfg[key] != "auto" and cfg[key] < 1:
            raise ValueError(f"config key '{key}' must be >= 1 or 'auto', got {cfg[key]}")
    if cfg["logit_head"] not in LOGIT_HEADS:
        raise ValueError(f"config key 'logit_head' must be one of {', '.join(LOGIT_HEADS)}, "
                         f"got {cfg['logit_head']!r}")
    if cfg["centroid_init"] not in CENTROID_INITS:
        raise ValueError(f"config key 'centroid_init' must be one of {', '.join(CENTROID_INITS)}, "
                         f"got {cfg['centroid_init']!r}")
    if cfg["open_ends"] and band_of(cfg["band"]) is not None:
        raise ValueError(f"config keys 'open_ends' and 'band' cannot be combined (band "
                         f"{cfg['band']}); set band: none or open_ends: false")
    if cfg["tune"] not in TUNE_MODES:
        raise ValueError(f"config key 'tune' must be one of {', '.join(TUNE_MODES)}, "
                         f"got {cfg['tune']!r}")
    if cfg["tune_folds"] < 2:
        raise ValueError(f"config key 'tune_folds' must be >= 2, got {cfg['tune_folds']}")
    if cfg["use_mm"] not in STEP_PATTERN_OF_USE_MM:
        raise ValueError(f"use_mm must be 0 or 1, got {cfg['use_mm']}")
    for key in ("batch_size", "sample_size_per_class", "centroids_per_class"):
        if key == "centroids_per_class" and cfg[key] == ALL_SERIES:
            continue
        if cfg[key] < 1:
            raise ValueError(f"{key} must be >= 1, got {cfg[key]}")
    for key in ("dba_max_iter", "num_workers", "eval_batch_size", "warmup_epochs",
                "num_classes", "feature_size", "logit_columns"):
        if cfg[key] < 0:
            raise ValueError(f"{key} must be >= 0, got {cfg[key]}")
    for key in ("lr", "ms_lr_div", "std_eps"):
        check_range(key, cfg[key], 0, above=True)
    check_range("weight_decay", cfg["weight_decay"], 0)
    check_range("min_lr_ratio", cfg["min_lr_ratio"], 0, 1)
    for key in ("betas", "mu_betas"):
        for b in cfg[key]:
            check_range(f"each of {key}", b, 0, 1, below=True)
    for key in ("seed", "centroid_seed"):
        check_range(key, cfg[key], 0, SEED_MAX)
    if cfg["eval_split"] not in ("val", "test"):
        raise ValueError(f"eval_split must be 'val' or 'test', got {cfg['eval_split']!r}")
    if cfg["train_split"] not in SPLITS:
        raise ValueError(f"train_split must be one of {', '.join(SPLITS)}, got "
                         f"{cfg['train_split']!r}")
    if cfg["freeze_centroids"] and cfg["freeze_weights"]:
        raise ValueError("freeze_centroids and freeze_weights are both true: nothing would be "
                         "trained; set one of them to false")
    if cfg["logit_columns"]:
        if cfg["num_classes"] and cfg["logit_columns"] != cfg["num_classes"]:
            raise ValueError(f"logit_columns = {cfg['logit_columns']} but num_classes = "
                             f"{cfg['num_classes']}: the encoder's logits are one column per "
                             f"class, so set logit_columns to {cfg['num_classes']} (or 0 if the "
                             f"features hold no logits)")
        if cfg["feature_size"] and cfg["logit_columns"] > cfg["feature_size"]:
            raise ValueError(f"logit_columns = {cfg['logit_columns']} exceeds feature_size = "
                             f"{cfg['feature_size']}; the logits are the last columns of each step")
    if cfg["store_dtype"] not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"store_dtype must be float32, float16 or bfloat16, got {cfg['store_dtype']!r}")
    if cfg["store_on_device"] and not cfg["store"]:
        raise ValueError("store_on_device needs the feature store: set store: true (or "
                         "store_on_device: false)")
    if cfg["backend"] not in ("auto", "ref", "numba", "cuda"):
        raise ValueError(f"backend must be auto, ref, numba or cuda, got {cfg['backend']!r}")


def step_pattern(cfg: dict) -> str:
    """The step pattern a config's ``use_mm`` selects ('hv' or 'hvd')."""
    return step_pattern_of(cfg["use_mm"])


def format_config(cfg: dict) -> str:
    return "\n".join(f"  {k}: {cfg[k]!r}" for k in sorted(cfg))
