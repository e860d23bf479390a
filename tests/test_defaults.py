"""One set of defaults: configs/default.yaml, the config keys' DEFAULTS, TrainSettings() and
DejaVidClassifier() resolve to the same values (dejavid/config/defaults.py is the source)."""
from __future__ import annotations

import dataclasses

import pytest

from conftest import ROOT
from dejavid import DejaVidClassifier
from dejavid.config import defaults as D
from dejavid.config.files import DEFAULTS, load_config
from dejavid.config.settings import TrainSettings, resolve_auto, settings_from_config

DEFAULT_YAML = ROOT / "configs" / "default.yaml"
# Keys of default.yaml that say where and how data are read, not what is computed.
DATA_KEYS = {"name", "in_memory"}
LENGTHS = [7, 9, 12, 20, 29, 15, 11, 8, 13] * 30     # 270 training series, median 12


def test_config_defaults_and_default_yaml_hold_the_shared_values():
    cfg = load_config(DEFAULT_YAML)
    for key, value in D.ALL.items():
        assert cfg[key] == value, key
        # a config file that does not name 'tune' trains as written (older configs)
        assert DEFAULTS[key] == (D.TUNE_ABSENT if key == "tune" else value), key
    written = load_config(DEFAULT_YAML)
    bare = load_config(None)
    differ = {k for k in DEFAULTS if written[k] != bare[k]}
    assert differ <= DATA_KEYS | {"tune"}, \
        f"default.yaml sets non-default values for {differ - DATA_KEYS - {'tune'}}"
    assert written["tune"] == "cv" and bare["tune"] == "none"


def test_estimator_constructor_defaults_are_the_shared_values():
    params = DejaVidClassifier().get_params()
    for key, value in D.ALL.items():
        assert params[key] == value, key
    assert params["step_pattern"] == D.STEP_PATTERN


def _without_data(settings: TrainSettings) -> dict:
    out = dataclasses.asdict(settings)
    out.pop("data")                  # which splits are read: the estimator has none
    out["loop"].pop("eval_batch_size")
    out["loop"].pop("num_workers")
    return out


def test_config_settings_and_estimator_resolve_to_the_same_training():
    cfg = load_config(DEFAULT_YAML)
    resolve_auto(cfg, LENGTHS)
    from_config = settings_from_config(cfg)
    from_dataclasses = TrainSettings().resolved(LENGTHS)
    from_estimator = DejaVidClassifier()._settings().resolved(LENGTHS)
    assert _without_data(from_config) == _without_data(from_dataclasses) \
        == _without_data(from_estimator)
    assert from_dataclasses.centroids.num_timesteps == 12       # the median length
    assert from_dataclasses.loop.num_epochs == 45               # ceil(400 / 9 batches)


def test_auto_is_resolved_from_the_lengths_and_checked():
    spec = TrainSettings()
    assert spec.centroids.num_timesteps == "auto" and spec.loop.num_epochs == "auto"
    resolved = spec.resolved([3] * 10000)
    assert resolved.centroids.num_timesteps == 8 and resolved.loop.num_epochs == 30
    from dejavid.config.settings import CentroidSpec, LoopSpec
    for bad in (0, 4.5, "many", True):
        with pytest.raises(ValueError, match="num_timesteps"):
            CentroidSpec(num_timesteps=bad)
        with pytest.raises(ValueError, match="num_epochs"):
            LoopSpec(num_epochs=bad)
