"""Library pieces the scripts rely on: schedule, logits, optimiser groups, batch order,
the metrics log after a crash, the settings edge, and the README's library snippets."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from dejavid.training.batching import epoch_batches
from dejavid.training.metrics_log import MetricsLog
from dejavid.model.layer import DejaVid, standardized_logits
from dejavid.training.optim import build_optimizer, build_scheduler, lr_factor
from dejavid.config.settings import (CentroidSpec, LoopSpec, ModelSpec, OptimSpec, index_from_config,
                              settings_from_config, step_pattern_of)


def test_lr_factor_warmup_then_cosine():
    # warmup: (e + 1) / (warmup + 1) for the first 3 epochs, then cosine from 1
    assert [lr_factor(e, 10, warmup_epochs=3) for e in range(3)] == [0.25, 0.5, 0.75]
    assert lr_factor(3, 10, warmup_epochs=3) == 1.0
    # half-way through the 7 cosine epochs: 0.5
    assert lr_factor(3 + 3.5, 10, warmup_epochs=3) == pytest.approx(0.5)
    assert lr_factor(9, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.9)))


def test_lr_factor_floor():
    # the cosine ends at min_ratio, and stays there past the last epoch
    assert lr_factor(10, 10, min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(25, 10, min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(5, 10, min_ratio=0.2) == pytest.approx(0.2 + 0.8 * 0.5)
    assert lr_factor(0, 10, min_ratio=0.2) == 1.0
    # warmup longer than the run: no division by zero
    assert lr_factor(4, 3, warmup_epochs=5) == pytest.approx(5 / 6)


def test_scheduler_follows_lr_factor():
    model = DejaVid(torch.zeros(2, 3, 4), w_one_init=True)
    spec = OptimSpec(lr=0.1, warmup_epochs=1, min_lr_ratio=0.05)
    opt = build_optimizer(model, spec)
    sched = build_scheduler(opt, spec, num_epochs=4)
    seen = []
    for _ in range(5):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    want = [0.1 * lr_factor(e, 4, 1, 0.05) for e in range(5)]
    assert seen == pytest.approx(want)


def test_standardized_logits_hand_computed():
    dist = torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 8.0]])
    z = standardized_logits(dist, eps=0.0)
    # row 0: -d = [-1, -2, -3], mean -2, std 1 -> [1, 0, -1]
    torch.testing.assert_close(z[0], torch.tensor([1.0, 0.0, -1.0]))
    # row 1: -d = [-5, -5, -8], mean -6, std sqrt(3) -> [1, 1, -2] / sqrt(3)
    torch.testing.assert_close(z[1], torch.tensor([1.0, 1.0, -2.0]) / math.sqrt(3))
    # shifting and scaling a row's distances changes nothing; eps keeps ties finite
    torch.testing.assert_close(standardized_logits(3 * dist + 7, eps=0.0), z)
    tied = standardized_logits(torch.ones(1, 4), eps=1e-6)
    assert torch.equal(tied, torch.zeros(1, 4))


def test_build_optimizer_groups_and_rates():
    model = DejaVid(torch.zeros(2, 3, 4), w_one_init=True)
    opt = build_optimizer(model, OptimSpec(lr=0.03, ms_lr_div=3.0, weight_decay=0.01,
                                           betas=(0.8, 0.9), mu_betas=(0.7, 0.95)))
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == {"theta", "mu"}
    assert groups["theta"]["params"][0] is model.theta and groups["mu"]["params"][0] is model.mu
    assert groups["theta"]["lr"] == 0.03 and groups["mu"]["lr"] == pytest.approx(0.01)
    assert groups["theta"]["betas"] == (0.8, 0.9) and groups["mu"]["betas"] == (0.7, 0.95)
    assert all(g["weight_decay"] == 0.01 for g in opt.param_groups)

    frozen = DejaVid(torch.zeros(2, 3, 4), w_one_init=True)
    opt = build_optimizer(frozen, OptimSpec(lr=0.03, freeze_centroids=True))
    assert [g["name"] for g in opt.param_groups] == ["theta"]
    assert not frozen.mu.requires_grad and frozen.theta.requires_grad


def test_epoch_batches_pure_function_covering_each_index_once():
    a = epoch_batches(23, 5, seed=3, epoch=2, shuffle=True)
    assert a == epoch_batches(23, 5, seed=3, epoch=2, shuffle=True)
    assert [len(b) for b in a] == [5, 5, 5, 5, 3]
    assert sorted(i for b in a for i in b) == list(range(23))
    # what the global RNG did in between does not matter: a resumed run replays the order
    torch.manual_seed(123)
    torch.rand(10)
    assert epoch_batches(23, 5, seed=3, epoch=2, shuffle=True) == a
    assert epoch_batches(23, 5, seed=3, epoch=3, shuffle=True) != a
    assert epoch_batches(23, 5, seed=4, epoch=2, shuffle=True) != a
    assert epoch_batches(7, 3, seed=0, epoch=0, shuffle=False) == [[0, 1, 2], [3, 4, 5], [6]]


def test_metrics_log_read_stops_at_a_line_cut_by_a_crash(tmp_path):
    log = MetricsLog(tmp_path)
    assert log.read() == []
    rows = [{"epoch": 1, "val_top1": 0.5}, {"epoch": 2, "val_top1": 0.75}]
    for r in rows:
        log.append(r)
    assert log.read() == rows
    # a crash while writing epoch 3 leaves half a line; a line after it is not trusted
    with open(log.path, "a") as fh:
        fh.write('{"epoch": 3, "val_to')
    assert log.read() == rows
    with open(log.path, "a") as fh:
        fh.write('\n{"epoch": 4}\n')
    assert log.read() == rows
    log.rewrite(rows[:1])
    assert log.read() == rows[:1] and log.path.read_text() == json.dumps(rows[0]) + "\n"


def test_settings_resolved_once_at_the_edge(tmp_path):
    from helpers import make_config, write_dataset
    paths = write_dataset(tmp_path, {"a": (torch.randn(5, 3), 0, "train"),
                                     "b": (torch.randn(4, 3), 1, "train")})
    cfg = make_config(paths, use_mm=1, eval_batch_size=0, batch_size=16, betas=[0.5, 0.6])
    with pytest.raises(ValueError, match="num_timesteps, num_epochs still 'auto'"):
        settings_from_config(cfg)
    index_from_config(cfg, progress=False)   # resolves the 'auto' values from the data
    s = settings_from_config(cfg)
    assert s.model.step_pattern == s.centroids.step_pattern == "hvd"
    assert s.loop.eval_batch_size == 16 and s.optim.betas == (0.5, 0.6)
    with pytest.raises(ValueError, match="use_mm must be 0 or 1"):
        step_pattern_of(2)
    with pytest.raises(ValueError, match="step_pattern must be one of"):
        ModelSpec(step_pattern="diag")
    with pytest.raises(ValueError, match="backend must be one of"):
        CentroidSpec(backend="triton")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        LoopSpec(batch_size=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.loop.batch_size = 3


# --- the README's "Using dejavid as a library" snippets ---------------------------------

def test_readme_layer_on_top_of_another_module_gradients_reach_the_inputs():
    import torch.nn as nn

    from dejavid import DejaVid

    # README snippet: start
    encoder = nn.Linear(8, 4)                      # any module producing [T, F] per sample
    head = DejaVid(torch.randn(3, 5, 4), step_pattern="hv", fixed_path=False)
    frames = torch.randn(7 + 9, 8, requires_grad=True)   # two samples of 7 and 9 steps
    offsets = torch.tensor([0, 7, 16])
    dist = head(encoder(frames), offsets)          # [2, 3] distances to 3 classes
    loss = nn.functional.cross_entropy(-dist, torch.tensor([0, 2]))
    loss.backward()
    # README snippet: end
    assert dist.shape == (2, 3)
    for grad in (frames.grad, encoder.weight.grad, head.mu.grad, head.theta.grad):
        assert grad is not None and bool(torch.isfinite(grad).all()) and grad.abs().sum() > 0


def test_readme_align_and_dba():
    from dejavid import align, dba

    g = torch.Generator().manual_seed(0)
    series = torch.randn(4, 6, 3, generator=g)           # 4 series of K = 6 steps, F = 3
    centroid = dba(series, series[0], "hv", max_iter=10)  # [6, 3]
    x, offsets = series.reshape(24, 3), torch.arange(5) * 6
    dist, paths = align(x, offsets, centroid[None], torch.zeros(1, 6, 3))  # [4, 1], [4, 1, 6, 2]
    assert centroid.shape == (6, 3) and dist.shape == (4, 1) and paths.shape == (4, 1, 6, 2)
    # DBA lowers the summed distance from its start
    start, _ = align(x, offsets, series[:1], torch.zeros(1, 6, 3))
    assert float(dist.sum()) <= float(start.sum())
