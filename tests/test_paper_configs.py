"""configs/hmdb51.yaml, k400.yaml, ssv2.yaml carry the published DejaVid set-up, and the
optimizer and schedule they build match the original code's (darrylho/DejaVid main_dist.py:
AdamW over two groups with no weight_decay argument, CosineAnnealingLR over the epochs)."""
from __future__ import annotations

import re

import pytest
import torch

from conftest import ROOT
from dejavid.config.files import load_config, step_pattern
from dejavid.model.layer import DejaVid
from dejavid.training.optim import build_optimizer, build_scheduler
from dejavid.config.settings import settings_from_config

CONFIGS = ROOT / "configs"
PAPER = {"hmdb51": 51, "k400": 400, "ssv2": 174}
ENCODER_DIM = 1408   # VideoMAE V2-g embedding size
SOURCES = ("published", "original", "our choice")


def _paper_cfg(name: str, **over) -> dict:
    args = []
    for k, v in over.items():
        args += [f"--{k}", str(v)]
    return load_config(CONFIGS / f"{name}.yaml", args)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_published_settings(name):
    cfg = _paper_cfg(name)
    C = PAPER[name]
    assert cfg["num_classes"] == C
    assert cfg["num_timesteps"] == 8
    assert cfg["num_epochs"] == 36
    assert cfg["weight_decay"] == 0.01
    assert cfg["seed"] == 1337 and cfg["centroid_seed"] == 1337
    assert cfg["batch_size"] == 384
    assert cfg["use_mm"] == 0 and step_pattern(cfg) == "hv"
    assert cfg["use_fixed_path"] is True
    assert cfg["ms_lr_div"] == 3.0
    assert cfg["betas"] == [0.9, 0.999] and cfg["mu_betas"] == [0.9, 0.999]
    assert cfg["warmup_epochs"] == 0 and cfg["min_lr_ratio"] == 0.0
    assert cfg["sample_size_per_class"] == 50 and cfg["dba_max_iter"] == 100
    assert cfg["std_eps"] == 1e-18
    assert not cfg["freeze_centroids"] and not cfg["freeze_weights"]
    blocks = 4 if name == "ssv2" else 1    # SSv2's step is 4 x (1408 + 174)
    assert cfg["feature_size"] == blocks * (ENCODER_DIM + C)
    # The encoder's logits are the last C columns for HMDB51 and K400 only.
    assert cfg["logit_columns"] == (0 if name == "ssv2" else C)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_every_value_names_its_source(name):
    """Each setting's line (or the comment line right below it) says where the value comes from."""
    lines = (CONFIGS / f"{name}.yaml").read_text().splitlines()
    unsourced = []
    for n, line in enumerate(lines):
        m = re.match(r"^(\w+):", line)
        if not m or m.group(1) in ("name", "id2feats", "id2splits", "id2labels", "id2fname"):
            continue
        comment = line.partition("#")[2]
        if not any(s in comment for s in SOURCES):
            unsourced.append(m.group(1))
    assert not unsourced, f"no source given for {unsourced} in {name}.yaml"
    assert "lr:" in "\n".join(lines) and "our choice" in next(l for l in lines if l.startswith("lr:"))


def _model(C=3, K=8, F=5, seed=0) -> DejaVid:
    g = torch.Generator().manual_seed(seed)
    return DejaVid(torch.randn(C, K, F, generator=g), generator=g)


def _original_style_optimizer(model: DejaVid, cfg: dict) -> torch.optim.AdamW:
    """How main_dist.py builds it: two groups, no weight_decay argument (AdamW's default)."""
    return torch.optim.AdamW([
        {"params": model.theta, "lr": cfg["lr"], "betas": tuple(cfg["betas"])},
        {"params": model.mu, "lr": cfg["lr"] / cfg["ms_lr_div"], "betas": tuple(cfg["mu_betas"])},
    ])


def test_original_relies_on_adamw_default_decay_of_0_01():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    assert opt.defaults["weight_decay"] == 0.01


@pytest.mark.parametrize("name", sorted(PAPER))
def test_weight_decay_reaches_both_groups_as_in_the_original(name):
    cfg = _paper_cfg(name)
    ours_model, orig_model = _model(), _model()
    ours, orig = build_optimizer(ours_model, settings_from_config(cfg).optim), _original_style_optimizer(orig_model, cfg)
    assert [g["name"] for g in ours.param_groups] == ["theta", "mu"]
    for a, b in zip(ours.param_groups, orig.param_groups):
        for key in ("lr", "betas", "weight_decay", "eps", "amsgrad", "maximize"):
            assert a[key] == b[key], key
        assert a["weight_decay"] == 0.01

    # Behaviour, not only settings: with zero gradients an AdamW step is the decoupled decay
    # alone, so both groups shrink by (1 - group lr * 0.01).
    theta0, mu0 = ours_model.theta.detach().clone(), ours_model.mu.detach().clone()
    for p in (ours_model.theta, ours_model.mu):
        p.grad = torch.zeros_like(p)
    ours.step()
    torch.testing.assert_close(ours_model.theta.detach(), theta0 * (1 - cfg["lr"] * 0.01),
                               rtol=1e-6, atol=0)
    torch.testing.assert_close(ours_model.mu.detach(),
                               mu0 * (1 - cfg["lr"] / cfg["ms_lr_div"] * 0.01), rtol=1e-6, atol=0)
    assert not torch.equal(ours_model.mu.detach(), mu0)

    # And a few steps with the same gradients leave both optimizers' parameters equal.
    ours_model, orig_model = _model(), _model()
    ours, orig = build_optimizer(ours_model, settings_from_config(cfg).optim), _original_style_optimizer(orig_model, cfg)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        for pa, pb in ((ours_model.theta, orig_model.theta), (ours_model.mu, orig_model.mu)):
            grad = torch.randn(pa.shape, generator=g)
            pa.grad, pb.grad = grad.clone(), grad.clone()
        ours.step()
        orig.step()
    assert torch.equal(ours_model.theta, orig_model.theta)
    assert torch.equal(ours_model.mu, orig_model.mu)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_schedule_is_the_originals_cosine_annealing(name):
    cfg = _paper_cfg(name)
    ours_opt, orig_opt = build_optimizer(_model(), settings_from_config(cfg).optim), _original_style_optimizer(_model(), cfg)
    ours = build_scheduler(ours_opt, settings_from_config(cfg).optim, cfg["num_epochs"])
    orig = torch.optim.lr_scheduler.CosineAnnealingLR(orig_opt, T_max=cfg["num_epochs"])
    for _ in range(cfg["num_epochs"] + 1):
        for a, b in zip(ours_opt.param_groups, orig_opt.param_groups):
            assert a["lr"] == pytest.approx(b["lr"], rel=1e-9, abs=1e-15)
        ours_opt.step()
        orig_opt.step()
        ours.step()
        orig.step()
