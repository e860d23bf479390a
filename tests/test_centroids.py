"""Resampling, medoid, DBA and the centroid cache (docs/DESIGN.md section 5)."""
from __future__ import annotations

import pickle
from dataclasses import replace

import pytest
import torch

from dejavid.alignment.ref import path_cost_ref
from dejavid.model.centroids import (dba, dba_cost, load_or_compute_centroids, medoid_index,
                               pairwise_dtw, resample)
from dejavid.config.files import load_config
from dejavid.data.dataset import TSEDataset
from dejavid.config.settings import index_from_config, settings_from_config

from conftest import DEMO_CONFIG, demo_overrides


def test_resample_hand_worked():
    x = torch.tensor([[0.0, 10.0], [2.0, 30.0]])          # T = 2
    out = resample(x, 5)
    expect = torch.tensor([[0.0, 10.0], [0.5, 15.0], [1.0, 20.0], [1.5, 25.0], [2.0, 30.0]])
    torch.testing.assert_close(out, expect)
    # aligned corners keep both ends exactly
    y = torch.randn(7, 3)
    z = resample(y, 4)
    torch.testing.assert_close(z[0], y[0])
    torch.testing.assert_close(z[-1], y[-1])


def test_resample_length_one_is_repeated():
    x = torch.tensor([[1.0, -2.0, 3.0]])
    torch.testing.assert_close(resample(x, 4), x.expand(4, 3))


@pytest.mark.parametrize("pattern", ["hv", "hvd"])
def test_pairwise_dtw_symmetric_zero_diagonal(pattern):
    torch.manual_seed(0)
    s = torch.randn(5, 6, 3)
    d = pairwise_dtw(s, pattern, backend="ref")
    torch.testing.assert_close(d, d.t())
    if pattern == "hvd":
        assert torch.all(d.diagonal() == 0)
    else:  # without the diagonal step even a series and itself pay for K + T - 1 cells
        assert torch.all(d.diagonal() > 0)


def test_medoid_hand_made():
    # Three constant series at 0, 1 and 5 (F = 1, K = T = 3): every cell costs |a - b|;
    # an hvd path has 3 cells, an hv path K + T - 1 = 5.  Summed distances per series
    # (hvd): 0 -> 3 + 15, 1 -> 3 + 12, 5 -> 15 + 12, so the medoid is index 1 (same for hv).
    s = torch.tensor([0.0, 1.0, 5.0]).view(3, 1, 1).expand(3, 3, 1).contiguous()
    for pattern, cells in (("hv", 5), ("hvd", 3)):
        assert medoid_index(s, pattern, backend="ref") == 1
        d = pairwise_dtw(s, pattern, backend="ref")
        assert d[0, 2].item() == pytest.approx(5.0 * cells)


def test_medoid_leaves_out_the_distance_to_itself():
    # K = T = 2, F = 1, hv (every path 3 cells).  Worked by hand (rows: centroid steps):
    # d(A, A) = 0 + 3 + 0 = 3, d(B, B) = 8, d(C, C) = 4; d(A, B) = min(4+7+1, 4+4+1) = 9,
    # d(A, C) = min(4+7+3, 4+0+3) = 7, d(B, C) = min(0+8+4, 0+4+4) = 8.
    # To the others: A 16, B 17, C 15 -> C.  With the self-distances A and C would tie at
    # 19 and the first (A) would win.
    s = torch.tensor([[5.0, 2.0], [9.0, 1.0], [9.0, 5.0]]).view(3, 2, 1)
    d = pairwise_dtw(s, "hv", backend="ref")
    assert d.tolist() == [[3, 9, 7], [9, 8, 8], [7, 8, 4]]
    for backend in ("ref", "numba"):
        assert medoid_index(s, "hv", backend=backend) == 2


def test_dba_zero_iterations_returns_start():
    torch.manual_seed(1)
    s = torch.randn(4, 5, 2)
    start = s[medoid_index(s, "hv", backend="ref")]
    torch.testing.assert_close(dba(s, start, "hv", 0, backend="ref"), start)


def test_dba_hand_made_average():
    # Identical timing: DBA of series aligned on the diagonal is their mean (hvd).
    s = torch.tensor([[[0.0], [10.0], [20.0]], [[2.0], [12.0], [22.0]]])
    mu = dba(s, s[0], "hvd", 5, backend="ref")
    torch.testing.assert_close(mu, torch.tensor([[1.0], [11.0], [21.0]]))


def _bumps(shifts, K=12):
    t = torch.arange(K, dtype=torch.float64)
    return torch.stack([torch.exp(-0.5 * (t - sh) ** 2)[:, None] for sh in shifts])  # [S, K, 1]


@pytest.mark.parametrize("pattern,shifts", [("hv", (3.0, 5.0, 7.0)), ("hv", (3.0, 6.0)),
                                            ("hvd", (3.0, 6.0))])
def test_each_dba_step_does_not_increase_cost(pattern, shifts):
    """Hand-made shifted bumps: the summed DTW cost to the centroid never rises per step.

    docs/DESIGN.md section 5: the update is the mean, which minimises squared error; the
    local cost is L1, whose minimiser is the median, so this is a property of examples like
    these, not a theorem (the next test shows what does hold for every input).
    """
    s = _bumps(shifts)
    mu = s[medoid_index(s, pattern, backend="ref")]
    costs = [dba_cost(s, mu, pattern, backend="ref")]
    for _ in range(5):
        mu = dba(s, mu, pattern, 1, backend="ref")
        costs.append(dba_cost(s, mu, pattern, backend="ref"))
    assert all(b <= a + 1e-12 for a, b in zip(costs, costs[1:])), costs
    assert costs[-1] < costs[0]


@pytest.mark.parametrize("pattern", ["hv", "hvd"])
def test_dba_update_minimises_squared_error_along_paths(pattern):
    """With the paths fixed, the DBA mean is the least-squares centroid: any perturbation of
    it increases the summed squared difference over the matched cells."""
    from dejavid.alignment.op import align, dba_accumulate
    g = torch.Generator().manual_seed(5)
    s = torch.randn(6, 9, 3, generator=g, dtype=torch.float64)
    x, off = s.reshape(-1, 3), torch.arange(7) * 9
    mu0 = s[0]
    _, paths = align(x, off, mu0[None], torch.zeros(1, 9, 3, dtype=torch.float64), pattern,
                     backend="ref")
    sums, counts = dba_accumulate(x, off, paths, backend="ref")
    mean = sums / counts[:, None]

    def sq(m):
        tot = 0.0
        for b in range(6):
            for i in range(9):
                lo, hi = paths[b, 0, i].tolist()
                tot += float(((s[b, lo:hi + 1] - m[i]) ** 2).sum())
        return tot
    base = sq(mean)
    for _ in range(5):
        assert sq(mean + 0.01 * torch.randn(9, 3, generator=g, dtype=torch.float64)) > base
    torch.testing.assert_close(dba(s, mu0, pattern, 1, backend="ref"), mean)


def _spec(cfg, pattern, backend="auto"):
    return replace(settings_from_config(cfg).centroids, step_pattern=pattern, backend=backend)


def _centroids(index, cfg, pattern, backend="auto", **kwargs):
    """The cached centroids of the config's training split, as train_dejavid computes them."""
    return load_or_compute_centroids(TSEDataset(index, cfg["train_split"]),
                                     _spec(cfg, pattern, backend), cfg["cache_dir"], **kwargs)


def _meta(index, cfg, pattern):
    from dejavid.model import centroids
    return centroids.centroid_meta(index, cfg["train_split"], _spec(cfg, pattern))


def _cfg(demo_data, tmp_path, *extra):
    return load_config(DEMO_CONFIG, demo_overrides(demo_data, tmp_path) + list(extra))


def test_zero_iterations_give_the_class_medoid(demo_data, tmp_path):
    cfg = _cfg(demo_data, tmp_path, "--dba_max_iter", "0", "--sample_size_per_class", "6",
               "--num_timesteps", "8")
    index = index_from_config(cfg, progress=False)
    mu, _ = _centroids(index, cfg, "hv", "ref", progress=False, log=lambda m: None)
    from dejavid.data.dataset import TSEDataset
    ds = TSEDataset(index, "train")
    # every centroid equals one of its class's resampled training videos
    for c in range(index.num_classes):
        cands = [resample(ds[n][0], 8) for n in range(len(ds)) if index.labels[ds.rows[n]] == c]
        assert any(torch.equal(mu[c], r) for r in cands)


def test_cache_reuse_and_invalidation(demo_data, tmp_path):
    logs = []
    base = ("--sample_size_per_class", "5", "--dba_max_iter", "3", "--num_timesteps", "6")
    cfg = _cfg(demo_data, tmp_path, *base)
    index = index_from_config(cfg, progress=False)
    mu1, p1 = _centroids(index, cfg, "hv", progress=False, log=logs.append)
    assert "computing" in logs[-1] and p1.is_file()
    mu2, p2 = _centroids(index, cfg, "hv", progress=False, log=logs.append)
    assert "reusing" in logs[-1] and p2 == p1 and torch.equal(mu1, mu2)
    assert not [f for f in p1.parent.iterdir() if f.name.endswith(".tmp")]

    paths = {p1}
    for extra in (("--num_timesteps", "7"), ("--centroid_seed", "1"),
                  ("--sample_size_per_class", "4"), ("--dba_max_iter", "2")):
        c2 = _cfg(demo_data, tmp_path, *base, *extra)
        _, p = _centroids(index, c2, "hv", progress=False, log=logs.append)
        assert "computing" in logs[-1], extra
        paths.add(p)
    _, p = _centroids(index, cfg, "hvd", progress=False, log=logs.append)
    assert "computing" in logs[-1]
    paths.add(p)
    assert len(paths) == 6


def test_cache_invalidated_when_data_changes(tmp_path, demo_data):
    import shutil
    data = tmp_path / "copy"
    shutil.copytree(demo_data, data)
    cfg = load_config(DEMO_CONFIG, demo_overrides(data, tmp_path) + [
        "--sample_size_per_class", "3", "--dba_max_iter", "1", "--num_timesteps", "4"])
    logs = []
    index = index_from_config(cfg, progress=False)
    _, p1 = _centroids(index, cfg, "hv", progress=False, log=logs.append)
    # change one training video's content
    with open(data / "id2fname.pkl", "rb") as fh:
        fname = pickle.load(fh)["train_0000"]
    x = torch.load(data / fname)
    torch.save(x + 1.0, data / fname)
    index2 = index_from_config(cfg, progress=False)
    _, p2 = _centroids(index2, cfg, "hv", progress=False, log=logs.append)
    assert "computing" in logs[-1] and p2 != p1


def test_stale_cache_file_is_not_trusted(demo_data, tmp_path):
    cfg = _cfg(demo_data, tmp_path, "--sample_size_per_class", "3", "--dba_max_iter", "1",
               "--num_timesteps", "4")
    index = index_from_config(cfg, progress=False)
    logs = []
    mu, p = _centroids(index, cfg, "hv", progress=False, log=logs.append)
    blob = torch.load(p)
    blob["meta"] = dict(blob["meta"], num_timesteps=99)   # as if written for other inputs
    blob["mu"] = torch.zeros_like(mu)
    torch.save(blob, p)
    mu2, _ = _centroids(index, cfg, "hv", progress=False, log=logs.append)
    assert "computing" in logs[-1] and torch.equal(mu2, mu)


def test_dba_distance_along_path_matches(demo_data, tmp_path):
    """The free-path DTW cost used by DBA equals the cost along its own path."""
    torch.manual_seed(0)
    s = torch.randn(4, 7, 3)
    x = s.reshape(28, 3)
    off = torch.arange(5) * 7
    from dejavid.alignment.op import align
    d, paths = align(x, off, s[:1], torch.zeros(1, 7, 3), "hv", backend="ref")
    torch.testing.assert_close(d, path_cost_ref(x, off, s[:1], torch.zeros(1, 7, 3), paths))


def test_interrupted_computation_continues_to_the_same_result(demo_data, tmp_path, monkeypatch):
    """Stopped after 4 of 9 classes (Ctrl-C), the next call picks up at class 5, with the
    sampling RNG where it was, and caches exactly what an uninterrupted run computes."""
    from dejavid.model import centroids
    base = ("--sample_size_per_class", "6", "--dba_max_iter", "3", "--num_timesteps", "6")
    index = index_from_config(_cfg(demo_data, tmp_path, *base), progress=False)
    want, _ = _centroids(index, _cfg(demo_data, tmp_path / "a", *base), "hv",
                                        progress=False, log=lambda m: None)

    cfg = _cfg(demo_data, tmp_path / "b", *base)
    monkeypatch.setattr(centroids, "PARTIAL_SAVE_SECONDS", 0.0)
    real_dba, calls = centroids.dba, []

    def dba_then_interrupt(*args, **kwargs):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(1)
        return real_dba(*args, **kwargs)

    monkeypatch.setattr(centroids, "dba", dba_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        _centroids(index, cfg, "hv", progress=False, log=lambda m: None)
    cache = centroids.cache_path(cfg["cache_dir"], _meta(index, cfg, "hv"))
    partial = centroids.partial_path(cache)
    assert not cache.exists() and partial.is_file()

    monkeypatch.setattr(centroids, "dba", real_dba)
    logs = []
    got, path = _centroids(index, cfg, "hv", progress=False, log=logs.append)
    assert any("at class 5/9" in m for m in logs), logs
    assert torch.equal(got, want)
    assert path == cache and not partial.exists()
    assert centroids.cached_seconds(cache) > 0


def test_partial_progress_of_other_inputs_is_ignored(demo_data, tmp_path, monkeypatch):
    from dejavid.model import centroids
    base = ("--sample_size_per_class", "4", "--dba_max_iter", "2", "--num_timesteps", "5")
    cfg = _cfg(demo_data, tmp_path, *base)
    index = index_from_config(cfg, progress=False)
    meta = _meta(index, cfg, "hv")
    partial = centroids.partial_path(centroids.cache_path(cfg["cache_dir"], meta))
    partial.parent.mkdir(parents=True, exist_ok=True)  # the feature store made cache_dir
    torch.save({"meta": dict(meta, centroid_seed=7), "done": 8, "mu": torch.zeros(8, 5, 12),
                "rng": {}, "seconds": 1.0}, partial)
    logs = []
    mu, _ = _centroids(index, cfg, "hv", progress=False, log=logs.append)
    assert not any("continuing" in m for m in logs)
    assert not torch.equal(mu[:8], torch.zeros(8, 5, 12))
