"""Baselines on tiny datasets whose right answer is known, the result cache and the table."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from dejavid.baselines import classic
from dejavid.baselines.classic import knn_class_distances
from dejavid.errors import MissingDependency
from dejavid.model.metrics import topk_counts
from dejavid.report.rows import Result, dba_centroid, knn_dtw, meanpool_lr, run_baseline
from dejavid.data.dataset import TSEDataset
from dejavid.config.settings import index_from_config, settings_from_config

from helpers import level_videos, make_config, ramp_videos, write_dataset

TINY = {"num_timesteps": 6, "sample_size_per_class": 10, "dba_max_iter": 10,
        "w_one_init": True, "batch_size": 8, "in_memory": True}


def _setup(tmp_path, videos, **over):
    cfg = make_config(write_dataset(tmp_path, videos), **{**TINY, **over})
    index = index_from_config(cfg, progress=False)
    return cfg, index, TSEDataset(index, "train", True, False), TSEDataset(index, "val", True, False)


def _dba(cfg, train, val):
    """The nearest-DBA-centroid row with the config's centroid settings and cache."""
    return dba_centroid(train, val, settings_from_config(cfg).centroids, cfg["cache_dir"],
                        device="cpu", log=lambda *a: None)


@pytest.fixture
def order_only(tmp_path):
    """Rising vs falling ramps: identical means, opposite temporal order."""
    return _setup(tmp_path, ramp_videos(12))


@pytest.fixture
def mean_separates(tmp_path):
    return _setup(tmp_path, level_videos({"train": 6, "val": 5}))


def test_order_only_mean_pooling_is_at_chance(order_only):
    pytest.importorskip("sklearn")
    _, _, train, val = order_only
    r = meanpool_lr(train, val)
    print(r)
    # Every falling video is a rising one reversed: same features, same prediction, so
    # exactly one of each pair is right.
    assert r.top1 == 0.5 and r.count == 24


@pytest.mark.parametrize("pattern", ["hv", "hvd"])
def test_order_only_dtw_methods_are_perfect(order_only, pattern):
    cfg, index, train, val = order_only
    cfg = {**cfg, "use_mm": {"hv": 0, "hvd": 1}[pattern]}
    r = knn_dtw(train, val, pattern, batch_size=5)
    d = _dba(cfg, train, val)
    print(r, d, sep="\n")
    assert r.top1 == 1.0 and d.top1 == 1.0


def test_mean_separates_every_baseline_is_perfect(mean_separates):
    pytest.importorskip("sklearn")
    cfg, index, train, val = mean_separates
    results = [meanpool_lr(train, val), knn_dtw(train, val, "hv"),
               _dba(cfg, train, val)]
    print(*results, sep="\n")
    assert [r.top1 for r in results] == [1.0, 1.0, 1.0]
    assert [r.top5 for r in results] == [1.0, 1.0, 1.0]
    C, K, F = 3, TINY["num_timesteps"], 3
    assert results[0].head_params == results[0].trained_params == C * F + C
    assert (results[1].head_params, results[1].trained_params) == (0, 0)
    assert (results[2].head_params, results[2].trained_params) == (C * K * F, 0)


def _dtw_np(a: np.ndarray, b: np.ndarray, pattern: str) -> float:
    """Independent unit-weight L1 DTW (docs/DESIGN.md section 3) between a [K, F] and b [T, F]."""
    D = np.abs(a[:, None, :] - b[None, :, :]).sum(-1)
    K, T = D.shape
    A = np.full((K, T), np.inf)
    for i in range(K):
        for j in range(T):
            prev = [A[i - 1, j] if i else np.inf, A[i, j - 1] if j else np.inf]
            if pattern == "hvd":
                prev.append(A[i - 1, j - 1] if i and j else np.inf)
            A[i, j] = D[i, j] + (0.0 if i == j == 0 else min(prev))
    return float(A[-1, -1])


@pytest.mark.parametrize("pattern", ["hv", "hvd"])
def test_knn_matches_brute_force_dtw(tmp_path, monkeypatch, pattern):
    """Variable lengths (T = 1 included), references grouped by length and split into
    chunks: the class distances equal an independent DTW over every pair."""
    g = torch.Generator().manual_seed(3)
    videos = {}
    for n in range(40):
        split = "train" if n < 26 else "val"
        T = 1 if n in (2, 30) else int(torch.randint(2, 9, (1,), generator=g))
        videos[f"v{n:02d}"] = (torch.randn(T, 4, generator=g), n % 6, split)
    _, _, train, val = _setup(tmp_path, videos)
    monkeypatch.setattr(classic, "_KNN_BLOCK", 20)  # several align calls per length group
    dist, labels = knn_class_distances(train, val, pattern, batch_size=3)
    want = np.full((len(val), 6), np.inf)
    for e in range(len(val)):
        xe, _, _ = val[e]
        for t in range(len(train)):
            xt, yt, _ = train[t]
            want[e, yt] = min(want[e, yt], _dtw_np(xt.numpy(), xe.numpy(), pattern))
    print("max |diff|", np.abs(dist.numpy() - want).max())
    np.testing.assert_allclose(dist.numpy(), want, rtol=1e-5, atol=1e-5)
    assert labels.tolist() == [val[e][1] for e in range(len(val))]
    r = knn_dtw(train, val, pattern, batch_size=4)
    order = np.argsort(want, axis=1, kind="stable")
    y = labels.numpy()
    assert r.top1 == pytest.approx((order[:, 0] == y).mean())
    assert r.top5 == pytest.approx((order[:, :5] == y[:, None]).any(1).mean())


def test_topk_counts_ties_go_to_the_lower_class():
    dist = torch.tensor([[1.0, 1.0, 3.0], [2.0, 0.5, 0.5], [0.0, 1.0, 2.0]])
    labels = torch.tensor([1, 1, 2])
    assert topk_counts(dist, labels, k=1) == (1, 1)   # row 1: class 1 wins the tie with 2
    assert topk_counts(dist, labels, k=2) == (1, 2)   # row 2: class 2 is third


def test_results_are_cached_and_invalidated(tmp_path):
    videos = ramp_videos(4)
    paths = write_dataset(tmp_path / "d", videos)
    out = tmp_path / "out"
    logs = []

    def run(**over):
        cfg = make_config(paths, **{**TINY, **over})
        index = index_from_config(cfg, progress=False)
        train, val = TSEDataset(index, "train"), TSEDataset(index, "val")
        return run_baseline("knn_dtw", out, train, val, settings_from_config(cfg),
                            cfg["cache_dir"], "cpu", log=logs.append)

    first = run()
    assert (out / "knn_dtw.json").is_file() and not any("reusing" in m for m in logs)
    logs.clear()
    assert run() == first and any(m.startswith("reusing knn_dtw") for m in logs)
    logs.clear()
    run(use_mm=1)                                              # other step pattern
    assert any("recomputing" in m for m in logs)
    logs.clear()
    torch.save(videos["val_up000"][0] + 1.0, paths["id2feats"] / "val_up000.pt")  # other data
    run(use_mm=1)
    assert any("recomputing" in m for m in logs)


def test_missing_extras_name_the_install_command(order_only, monkeypatch):
    _, _, train, val = order_only
    for name in ("sklearn", "sklearn.linear_model", "sklearn.preprocessing"):
        monkeypatch.setitem(sys.modules, name, None)   # as if not installed, even if imported
    with pytest.raises(MissingDependency, match="pip install scikit-learn"):
        meanpool_lr(train, val)
    from dejavid.report import plots
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(plots.MissingDependency, match="pip install matplotlib"):
        plots.learning_curves({"a": []}, train.index.root / "x.png")


def test_dba_row_reports_the_compute_time_of_cached_centroids(mean_separates):
    """Centroids computed earlier (e.g. by train_dejavid) keep their compute time in the cache."""
    cfg, index, train, val = mean_separates
    first = _dba(cfg, train, val)
    again = _dba(cfg, train, val)
    assert first.train_seconds > 0 and "from the cache" not in first.notes
    assert 0 < again.train_seconds <= first.train_seconds  # the computation inside that call
    assert "from the cache" in again.notes and "without its compute time" not in again.notes
