"""freeze_weights ("centroids only") and freeze_centroids ("weights only"): the frozen
parameter stays bitwise unchanged through training, AdamW's decoupled weight decay included,
while the other one trains."""
from __future__ import annotations

import pytest
import torch

import train_dejavid
from dejavid.model.centroids import load_or_compute_centroids
from dejavid.config.files import load_config
from dejavid.data.dataset import TSEDataset
from dejavid.training.engine import train_one_epoch
from dejavid.model.layer import DejaVid
from dejavid.training.optim import build_optimizer, build_scheduler
from dejavid.config.settings import OptimSpec, index_from_config, settings_from_config
from helpers import level_videos, make_config, write_config_yaml, write_dataset

FROZEN = {"freeze_weights": "theta", "freeze_centroids": "mu"}
# Large enough that one step of decay alone would move every parameter (lr * wd = 5e-4).
SETTINGS = dict(num_timesteps=4, batch_size=6, lr=0.05, weight_decay=0.01, num_epochs=3,
                sample_size_per_class=4, dba_max_iter=3, seed=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("freeze"), level_videos({"train": 6, "val": 2}))


def test_both_frozen_is_an_error(data):
    with pytest.raises(ValueError, match="nothing would be trained"):
        make_config(data, freeze_weights=True, freeze_centroids=True)
    with pytest.raises(ValueError, match="set one of them to false"):
        OptimSpec(freeze_weights=True, freeze_centroids=True)   # a library user's settings


@pytest.mark.parametrize("key", sorted(FROZEN))
def test_optimizer_leaves_out_the_frozen_parameter(data, key):
    cfg = make_config(data, num_timesteps=3, num_epochs=1, **{key: True})
    model = DejaVid(torch.randn(2, 3, 4))
    opt = build_optimizer(model, settings_from_config(cfg).optim)
    frozen = FROZEN[key]
    trained = ({"theta", "mu"} - {frozen}).pop()
    assert [g["name"] for g in opt.param_groups] == [trained]
    assert not getattr(model, frozen).requires_grad
    assert getattr(model, trained).requires_grad


@pytest.mark.parametrize("key", sorted(FROZEN))
def test_frozen_parameter_is_bitwise_unchanged_by_training(data, key):
    """Three epochs with fixed paths and weight decay 0.01, through the training loop."""
    cfg = make_config(data, **SETTINGS, **{key: True})
    settings = settings_from_config(cfg)
    ds = TSEDataset(index_from_config(cfg, progress=False), "train")
    mu0, _ = load_or_compute_centroids(ds, settings.centroids, cfg["cache_dir"], progress=False,
                                       log=lambda *a: None)
    model = DejaVid(mu0, "hv", fixed_path=True, generator=torch.Generator().manual_seed(0))
    start = {"theta": model.theta.detach().clone(), "mu": model.mu.detach().clone()}
    opt = build_optimizer(model, settings.optim)
    sched = build_scheduler(opt, settings.optim, settings.loop.num_epochs)
    for epoch in range(cfg["num_epochs"]):
        model.snapshot()
        assert train_one_epoch(model, ds, opt, settings.loop, torch.device("cpu"), epoch,
                               progress=False) is not None
        sched.step()
    frozen = FROZEN[key]
    trained = ({"theta", "mu"} - {frozen}).pop()
    assert torch.equal(getattr(model, frozen).detach(), start[frozen])
    moved = (getattr(model, trained).detach() - start[trained]).abs().max().item()
    print(f"{trained} moved by up to {moved:.3g}")
    assert moved > 1e-3


@pytest.mark.parametrize("key", sorted(FROZEN))
def test_train_script_honours_the_freeze(data, tmp_path, key):
    """End to end: centroids only with w_one_init keeps w = 1 exactly; weights only keeps the
    cached DBA centroids exactly."""
    cfg_path = write_config_yaml(tmp_path / "c.yaml", data, **SETTINGS, w_one_init=True,
                                 output_dir=str(tmp_path / "runs"), run_name="r", **{key: True})
    assert train_dejavid.main(["--config", str(cfg_path), "--no-progress"]) == 0
    ckpt = torch.load(tmp_path / "runs" / "r" / "last.pt", weights_only=False)
    mu, theta = ckpt["model"]["mu"], ckpt["model"]["theta"]
    cfg = load_config(cfg_path)
    train = TSEDataset(index_from_config(cfg, progress=False), "train")
    cached, _ = load_or_compute_centroids(train, settings_from_config(cfg).centroids,
                                          cfg["cache_dir"], progress=False, log=lambda *a: None)
    if key == "freeze_weights":
        assert torch.equal(theta, torch.zeros_like(theta))          # w = exp(0) = 1
        assert not torch.equal(mu, cached)
    else:
        assert torch.equal(mu, cached)
        assert not torch.equal(theta, torch.zeros_like(theta))
