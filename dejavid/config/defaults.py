"""The one set of defaults for what DejaVid computes, shared by every way to run it.

    configs/default.yaml          the starting point for one's own data (these values)
    dejavid.config.files.DEFAULTS the config keys a YAML file or --key value does not set
    dejavid.config.settings       TrainSettings() and its parts
    DejaVidClassifier()           the estimator's constructor defaults

This module imports nothing (the estimator reads it without loading torch);
tests/test_defaults.py holds the four together.  The values are those measured on six
public data sets (docs/results.md, "Accuracy on six public data sets"): K and the epoch
count follow the data ('auto'), a learned temperature head (trains for every C >= 2),
per-feature standardisation, weights starting at 1.
"""
from __future__ import annotations

AUTO = "auto"

MODEL = {
    "num_timesteps": AUTO,         # K: the median training length, clipped to [8, 128]
    "use_fixed_path": True,        # paths from a per-epoch parameter snapshot
    "w_one_init": True,            # start exactly at the nearest-DBA-centroid classifier
    "freeze_centroids": False,
    "freeze_weights": False,
    "logit_head": "temperature",   # -d / tau, tau calibrated from the data and learned
    "std_eps": 1e-6,               # epsilon of the zscore head
    "standardize": True,           # per-feature mean/std of the training split
    "backend": "auto",
    "device": "auto",
}
CENTROIDS = {
    "sample_size_per_class": 50,
    "dba_max_iter": 100,
    "centroid_seed": 0,
}
TRAINING = {
    "num_epochs": AUTO,            # enough for 400 AdamW updates, clipped to [30, 200]
    "batch_size": 32,
    "lr": 0.05,
    "ms_lr_div": 3.0,
    "weight_decay": 0.0,
    "warmup_epochs": 0,
    "min_lr_ratio": 0.0,
    "seed": 0,
}
STEP_PATTERN = "hv"                # use_mm: 0
# Settings chosen by cross-validation inside the training split (dejavid.training.tune):
# on for data of one's own (configs/default.yaml, DejaVidClassifier()), measured in
# docs/results.md.  A config file that does not name 'tune' trains as it is written
# (TUNE_ABSENT), so the paper configs and every config written before keep their results.
TUNING = {
    "tune": "cv",                  # cv: choose first (docs/usage.md "Tuning"); none: as configured
    "tune_folds": 3,               # stratified folds of the training split
}
TUNE_ABSENT = "none"

ALL = {**MODEL, **CENTROIDS, **TRAINING, **TUNING}
