"""Config: one source of defaults (configs/*.yaml), one override path (--key value)."""
from __future__ import annotations

from pathlib import Path

import pytest

from dejavid.config.files import DEFAULTS, load_config, parse_overrides, step_pattern
from helpers import make_config, write_dataset

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def write_yaml(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_lists_valid_keys(msg: str) -> None:
    assert "valid keys:" in msg
    for key in ("batch_size", "lr", "use_fixed_path", "id2feats"):
        assert key in msg.split("valid keys:", 1)[1]


# ---------------------------------------------------------------- unknown keys

def test_unknown_key_in_yaml(tmp_path):
    path = write_yaml(tmp_path, "lr: 0.01\nlearning_rate: 0.01\n")
    with pytest.raises(ValueError) as info:
        load_config(path)
    msg = str(info.value)
    assert "unknown config key 'learning_rate'" in msg
    assert str(path) in msg
    assert_lists_valid_keys(msg)


def test_unknown_key_on_command_line():
    with pytest.raises(ValueError) as info:
        load_config(None, ["--lr", "0.1", "--bogus_key", "3"])
    msg = str(info.value)
    assert "unknown config key 'bogus_key' (from command line)" in msg
    assert_lists_valid_keys(msg)


def test_positional_token_on_command_line():
    with pytest.raises(ValueError) as info:
        load_config(None, ["lr", "0.1"])
    assert "expected --key value, got 'lr'" in str(info.value)


def test_key_without_value():
    with pytest.raises(ValueError, match="--lr needs a value"):
        load_config(None, ["--lr"])


def test_yaml_not_a_mapping(tmp_path):
    path = write_yaml(tmp_path, "- lr\n- 0.1\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_config(path)


# ---------------------------------------------------------------- types

@pytest.mark.parametrize("text, key, expect", [
    ('batch_size: "384"\n', "batch_size", "must be an integer"),     # string for int
    ("batch_size: 38.4\n", "batch_size", "must be an integer"),       # float for int
    ("batch_size: true\n", "batch_size", "must be an integer"),       # bool for int
    ("use_fixed_path: 1\n", "use_fixed_path", "must be true/false"),  # int for bool
    ('use_fixed_path: "yes please"\n', "use_fixed_path", "must be true/false"),
    ('lr: "fast"\n', "lr", "must be a number"),
    ("name: 5\n", "name", "must be a string"),
    ("betas: [0.9]\n", "betas", "must be a list of 2 numbers"),      # wrong length
    ("betas: [0.9, 0.99, 0.999]\n", "betas", "must be a list of 2 numbers"),
    ("betas: [0.9, fast]\n", "betas", "must be a list of 2 numbers"),
    ("betas: 0.9\n", "betas", "must be a list of 2 numbers"),
], ids=["str-for-int", "float-for-int", "bool-for-int", "int-for-bool", "str-for-bool",
        "str-for-float", "int-for-str", "list-short", "list-long", "list-of-str", "scalar-for-list"])
def test_wrong_type_in_yaml(tmp_path, text, key, expect):
    path = write_yaml(tmp_path, text)
    with pytest.raises(ValueError) as info:
        load_config(path)
    msg = str(info.value)
    assert f"config key '{key}' (from {path})" in msg
    assert expect in msg


@pytest.mark.parametrize("args, key, expect", [
    (["--batch_size", "big"], "batch_size", "must be an integer"),
    (["--use_fixed_path", "1"], "use_fixed_path", "must be true/false"),
    (["--betas", "[0.9]"], "betas", "must be a list of 2 numbers"),
    (["--lr", "true"], "lr", "must be a number"),
], ids=["str-for-int", "int-for-bool", "list-short", "bool-for-float"])
def test_wrong_type_on_command_line(args, key, expect):
    with pytest.raises(ValueError) as info:
        load_config(None, args)
    msg = str(info.value)
    assert f"config key '{key}' (from command line)" in msg
    assert expect in msg


def test_value_checks_beyond_types():
    with pytest.raises(ValueError, match="use_mm must be 0 or 1, got 2"):
        load_config(None, ["--use_mm", "2"])
    with pytest.raises(ValueError, match="eval_split must be 'val' or 'test'"):
        load_config(None, ["--eval_split", "train"])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        load_config(None, ["--batch_size", "0"])


# ---------------------------------------------------------------- overrides

def test_override_parsing():
    cfg = load_config(None, ["--lr", "0.1", "--betas", "[0.9,0.99]", "--use_fixed_path", "false",
                             "--batch_size=48", "--ms_lr_div", "3", "--run_name", "007"])
    assert cfg["lr"] == 0.1 and isinstance(cfg["lr"], float)
    assert cfg["betas"] == [0.9, 0.99]
    assert cfg["use_fixed_path"] is False
    assert cfg["batch_size"] == 48
    assert cfg["ms_lr_div"] == 3.0 and isinstance(cfg["ms_lr_div"], float)
    assert cfg["run_name"] == "007"  # a string key keeps its text even if it looks numeric


def test_override_equals_form():
    assert parse_overrides(["--lr=0.5", "--use_mm=1", "--betas=[0.8, 0.9]"]) == [
        ("lr", 0.5), ("use_mm", 1), ("betas", [0.8, 0.9])]


def test_override_dashes_in_key():
    assert load_config(None, ["--use-fixed-path", "false"])["use_fixed_path"] is False


def test_override_equals_form_keeps_dashes_in_value():
    cfg = load_config(None, ["--run_name=my-run", "--id2feats=/data/hmdb-51/feats"])
    assert cfg["run_name"] == "my-run"
    assert cfg["id2feats"] == "/data/hmdb-51/feats"


@pytest.mark.parametrize("args", [["--lr", "1e-4"], ["--lr=1e-4"]], ids=["space", "equals"])
def test_override_scientific_notation(args):
    assert load_config(None, args)["lr"] == pytest.approx(1e-4)


def test_yaml_scientific_notation(tmp_path):
    assert load_config(write_yaml(tmp_path, "lr: 1e-4\n"))["lr"] == pytest.approx(1e-4)


def test_command_line_overrides_file(tmp_path):
    path = write_yaml(tmp_path, "lr: 0.5\nbatch_size: 16\n")
    cfg = load_config(path, ["--lr", "0.25"])
    assert cfg["lr"] == 0.25 and cfg["batch_size"] == 16


def test_base_then_file_then_command_line(tmp_path):
    path = write_yaml(tmp_path, "batch_size: 16\n")
    cfg = load_config(path, ["--seed", "3"], base={"batch_size": 8, "seed": 1, "lr": 0.2})
    assert (cfg["batch_size"], cfg["seed"], cfg["lr"]) == (16, 3, 0.2)


def test_defaults_are_not_shared_between_loads():
    cfg = load_config(None)
    cfg["betas"][0] = 0.0
    assert load_config(None)["betas"] == DEFAULTS["betas"] == [0.9, 0.999]


# ---------------------------------------------------------------- files

def test_name_defaults_to_file_stem(tmp_path):
    assert load_config(write_yaml(tmp_path, "lr: 0.1\n", "my_dataset.yaml"))["name"] == "my_dataset"
    assert load_config(write_yaml(tmp_path, "name: other\n", "x.yaml"))["name"] == "other"


def test_empty_yaml_gives_defaults(tmp_path):
    cfg = load_config(write_yaml(tmp_path, "", "blank.yaml"))
    assert {k: v for k, v in cfg.items() if k != "name"} == {
        k: v for k, v in DEFAULTS.items() if k != "name"}
    assert cfg["name"] == "blank"


def test_missing_config_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(FileNotFoundError) as info:
        load_config(path)
    assert "config file not found" in str(info.value)
    assert str(path) in str(info.value)


ISSUE_VALUES = {
    "hmdb51": {"num_classes": 51, "feature_size": 1459},
    "k400": {"num_classes": 400, "feature_size": 1808},
    "ssv2": {"num_classes": 174, "feature_size": 6328},
}
COMMON_VALUES = {"num_timesteps": 8, "use_mm": 0, "use_fixed_path": True, "ms_lr_div": 3.0,
                 "batch_size": 384, "betas": [0.9, 0.999], "sample_size_per_class": 50,
                 "dba_max_iter": 100}


@pytest.mark.parametrize("dataset", sorted(ISSUE_VALUES))
def test_shipped_dataset_config_values(dataset):
    cfg = load_config(CONFIGS / f"{dataset}.yaml")
    assert cfg["name"] == dataset
    for key, want in {**COMMON_VALUES, **ISSUE_VALUES[dataset]}.items():
        assert cfg[key] == want, key
        assert type(cfg[key]) is type(want), key
    assert step_pattern(cfg) == "hv"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert set(cfg) == set(DEFAULTS)
    assert cfg["name"]


def test_shipped_configs_present():
    assert {p.stem for p in CONFIGS.glob("*.yaml")} >= set(ISSUE_VALUES)


# ---------------------------------------------------------------- test helper

def test_make_config_helper(tmp_path):
    import torch
    paths = write_dataset(tmp_path, {"v": (torch.zeros(2, 3), 0, "train")})
    cfg = make_config(paths, num_timesteps=4)
    assert cfg["id2feats"] == str(paths["id2feats"])
    assert cfg["id2labels"] == str(paths["id2labels"])
    assert cfg["num_timesteps"] == 4
    assert Path(cfg["cache_dir"]).parent == tmp_path
    with pytest.raises(ValueError, match="unknown config key 'nope'"):
        make_config(paths, nope=1)
