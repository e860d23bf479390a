"""Logit heads: gradients for C = 2 and 3, calibration, checkpoints, optimizer, config keys,
num_timesteps auto, and a two-class data set that trains under the default head."""
from __future__ import annotations

import json
import math

import pytest
import torch

import train_dejavid
from dejavid.config.files import DEFAULTS, load_config
from dejavid.model.layer import DejaVid, TemperatureHead, ZScoreHead, loss_fn, make_head
from dejavid.training.optim import build_optimizer
from dejavid.config.settings import OptimSpec, auto_num_epochs, auto_num_timesteps, resolve_auto


def _dist_grad(head, C: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    dist = (10 + 5 * torch.rand(8, C, generator=g, dtype=torch.float64)).requires_grad_()
    labels = torch.randint(0, C, (8,), generator=g)
    loss_fn(dist, labels, head=head.double()).backward()
    return dist.grad


@pytest.mark.parametrize("C", [2, 3])
def test_default_head_has_gradient_for_two_and_three_classes(C):
    head = make_head(DEFAULTS["logit_head"])
    grad = _dist_grad(head, C)
    print("default head, C =", C, "max |dL/dd| =", grad.abs().max().item())
    assert grad.abs().max() > 1e-3
    # Softmax ignores a per-sample shift, so each sample's gradient sums to zero over classes.
    assert torch.allclose(grad.sum(1), torch.zeros(8, dtype=torch.float64), atol=1e-12)


def test_zscore_head_has_no_gradient_for_two_classes():
    """Why the default changed: with C = 2 the z-scored logits are +-1/sqrt(2) whatever d is."""
    grad = _dist_grad(ZScoreHead(eps=1e-6), 2)
    tiny = _dist_grad(ZScoreHead(eps=1e-9), 2)
    print("zscore head, C = 2, max |dL/dd| =", grad.abs().max().item(), "(eps 1e-6),",
          tiny.abs().max().item(), "(eps 1e-9)")
    # What is left comes from eps alone: it shrinks in proportion to eps.
    assert grad.abs().max() < 1e-4
    assert tiny.abs().max() < 2e-3 * grad.abs().max()
    dist = torch.tensor([[1.0, 5.0], [3.0, 100.0]])
    logits = ZScoreHead(0.0)(dist)
    assert torch.allclose(logits.abs(), torch.full_like(logits, 1 / math.sqrt(2)))
    # C = 3 still trains through it (the head is kept for the paper's configs).
    assert _dist_grad(ZScoreHead(eps=1e-6), 3).abs().max() > 1e-3


def test_loss_fn_without_head_is_the_paper_zscore():
    dist = torch.rand(5, 4)
    labels = torch.tensor([0, 1, 2, 3, 0])
    assert torch.equal(loss_fn(dist, labels, 1e-6, reduction="sum"),
                       loss_fn(dist, labels, 1e-6, reduction="sum", head=ZScoreHead(1e-6)))


def test_temperature_calibration_gives_unit_spread():
    dist = 1000 + 300 * torch.rand(64, 5)
    head = TemperatureHead()
    head.calibrate(dist)
    z = head(dist)
    spread = (z - z.mean(1, keepdim=True)).pow(2).mean().sqrt()
    assert abs(spread.item() - 1.0) < 1e-4
    head.calibrate(torch.full((4, 3), 7.0))  # no spread at all: tau stays 1, not inf/nan
    assert head.log_temperature.item() == 0.0


def test_head_parameter_in_optimizer_and_model():
    mu = torch.randn(3, 4, 2)
    spec = OptimSpec(lr=0.05, weight_decay=0.01)
    model = DejaVid(mu, logit_head="temperature")
    opt = build_optimizer(model, spec)
    group = {g["name"]: g for g in opt.param_groups}["head"]
    assert group["params"][0] is model.head.log_temperature
    assert group["lr"] == spec.lr and group["weight_decay"] == 0.0
    zs = build_optimizer(DejaVid(mu, logit_head="zscore"), spec)
    assert "head" not in {g["name"] for g in zs.param_groups}


@pytest.mark.parametrize("key,value", [("logit_head", "softmax"), ("logit_head", 3),
                                       ("standardize", "maybe"), ("num_timesteps", "median"),
                                       ("num_timesteps", 0), ("num_timesteps", 2.5),
                                       ("num_epochs", "many"), ("num_epochs", 0)])
def test_bad_values_of_new_keys_name_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        load_config(None, [f"--{key}", str(value)])


def test_new_keys_parse_from_the_command_line():
    cfg = load_config(None, ["--num_timesteps", "12", "--logit_head", "zscore",
                             "--standardize", "false"])
    assert (cfg["num_timesteps"], cfg["logit_head"], cfg["standardize"]) == (12, "zscore", False)
    assert load_config(None, ["--num_timesteps", "auto"])["num_timesteps"] == "auto"


def test_old_checkpoint_configs_keep_the_paper_head():
    """A config saved before these keys existed resumes with the behaviour it was trained with."""
    old = {k: v for k, v in load_config(None, ["--num_timesteps", "16"]).items()
           if k not in ("logit_head", "standardize")}
    cfg = load_config(None, base=old)
    assert cfg["logit_head"] == "zscore" and cfg["standardize"] is False


@pytest.mark.parametrize("name", ["hmdb51", "k400", "ssv2"])
def test_paper_configs_select_the_zscore_head(name):
    from conftest import ROOT
    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg["logit_head"] == "zscore" and cfg["standardize"] is False
    assert cfg["num_timesteps"] == 8


def test_auto_num_timesteps_rule():
    assert auto_num_timesteps([20, 24, 26]) == 24
    assert auto_num_timesteps([3, 4, 5]) == 8            # clipped below
    assert auto_num_timesteps([1460] * 5) == 128         # clipped above
    assert auto_num_timesteps([10, 20]) == 15            # even count: mean of the middle two
    cfg = {"num_timesteps": "auto", "num_epochs": 5, "batch_size": 32}
    notes = resolve_auto(cfg, [30, 31, 32])
    assert cfg["num_timesteps"] == 31 and "auto -> 31" in notes[0] and len(notes) == 1
    cfg = {"num_timesteps": 16, "num_epochs": 5}
    assert resolve_auto(cfg, [30]) == [] and cfg["num_timesteps"] == 16


def test_auto_num_epochs_rule():
    assert auto_num_epochs(100, 32) == 100               # 4 updates per epoch -> 400 updates
    assert auto_num_epochs(270, 32) == 45                # 9 per epoch
    assert auto_num_epochs(20, 32) == 200                # 1 per epoch: capped
    assert auto_num_epochs(240_000, 384) == 30           # large data: at least 30 epochs
    cfg = {"num_timesteps": 8, "num_epochs": "auto", "batch_size": 32}
    notes = resolve_auto(cfg, [5] * 100)
    assert cfg["num_epochs"] == 100 and "num_epochs: auto -> 100" in notes[0]


@pytest.fixture(scope="module")
def italy_power(tmp_path_factory):
    """aeon's ItalyPowerDemand (2 classes, 67 train / 1029 test series of 24 steps)."""
    pytest.importorskip("aeon")
    import prepare_demo
    out = tmp_path_factory.mktemp("ipd")
    assert prepare_demo.main(["--out", str(out), "--dataset", "ItalyPowerDemand"]) == 0
    return out


def test_two_class_training_loss_falls_and_beats_the_dba_start(italy_power, tmp_path, capsys):
    from conftest import ROOT, demo_overrides
    argv = ["--config", str(ROOT / "configs" / "default.yaml"),
            *demo_overrides(italy_power, tmp_path), "--run_name", "two", "--num_epochs", "30",
            "--tune", "none",
            "--no-progress"]
    assert train_dejavid.main(argv) == 0
    out = capsys.readouterr().out
    assert "num_timesteps: auto -> 24" in out
    run = tmp_path / "runs" / "two"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows]
    print("train loss per epoch", [round(v, 4) for v in losses])
    print("val top-1 per epoch", [r["val_top1"] for r in rows])
    assert sum(losses[-5:]) < 0.25 * sum(losses[:5])
    assert min(losses[15:]) < min(losses[:15])

    # Its starting point: the run's own centroids with w = 1 (cached by the run).
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["config"]["logit_head"] == "temperature" and "log_temperature" in ckpt["head"]
    from dejavid.model.centroids import load_or_compute_centroids
    from dejavid.data.dataset import TSEDataset
    from dejavid.training.engine import evaluate
    from dejavid.config.settings import index_from_config, settings_from_config
    cfg = dict(ckpt["config"])
    index = index_from_config(cfg, progress=False)
    settings = settings_from_config(cfg)
    said = []
    mu0, _ = load_or_compute_centroids(TSEDataset(index, "train"), settings.centroids,
                                       cfg["cache_dir"], progress=False, log=said.append)
    start = evaluate(DejaVid(mu0, settings.model.step_pattern, False, True),
                     TSEDataset(index, "val"), settings.loop, torch.device("cpu"),
                     progress=False)["top1"]
    print("DBA start", start, "final", rows[-1]["val_top1"])
    assert "reusing cached centroids" in said[0]  # the very centroids the run started from
    assert rows[-1]["val_top1"] > start + 0.05
