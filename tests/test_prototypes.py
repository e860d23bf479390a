"""Several centroid series per class (config key ``centroids_per_class``, M).

- M = 1 is bitwise today's model and centroids (no pool, no new state, the same cache);
- the soft minimum: one prototype = its distance, between min and mean, min as t -> 0;
- k-medoids finds separated clusters; classes with fewer videos than M get fewer prototypes;
- gradcheck of the pooled distance with M > 1 (and a band) on the reference backend;
- numba gives the reference's pooled distances and gradients with M and a band;
- fit with M = 2: the pool trains, checkpoints restore it, model_from_checkpoint rebuilds it.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dejavid.config.settings import (CentroidSpec, LoopSpec, ModelSpec, OptimSpec,
                                     TrainSettings)
from dejavid.data.arrays import ArrayDataset, index_from_arrays
from dejavid.model import centroids as cen
from dejavid.model.layer import DejaVid, SoftMinPool
from dejavid.training.checkpoint import restore_model
from dejavid.training.optim import build_optimizer
from dejavid.training.run import fit, model_from_checkpoint
from parity import make_inputs


def _two_mode_data(seed=0, per_mode=6, F=2):
    """3 classes; class 0 and 1 have two distinct shapes each (a rising and a falling ramp
    at class-specific levels), class 2 has only 2 videos.  Lengths 9-14."""
    g = np.random.default_rng(seed)
    X, y = [], []
    for c in range(2):
        for mode in (1.0, -1.0):
            for _ in range(per_mode):
                T = int(g.integers(9, 15))
                ramp = mode * np.linspace(-1, 1, T)[:, None] * np.ones((1, F))
                X.append((ramp + 3.0 * c + 0.1 * g.standard_normal((T, F))).astype(np.float32))
                y.append(c)
    for _ in range(2):
        T = int(g.integers(9, 15))
        X.append((-3.0 + 0.1 * g.standard_normal((T, F))).astype(np.float32))
        y.append(2)
    return X, y


def _dataset(seed=0):
    X, y = _two_mode_data(seed)
    index, tensors = index_from_arrays(X, y)
    return ArrayDataset(index, tensors)


SPEC = dict(num_timesteps=6, sample_size_per_class=50, dba_max_iter=5, backend="ref")


def test_one_prototype_per_class_is_bitwise_the_plain_model():
    x, offsets, mu, theta, up = make_inputs((3, 9, 1), 4, 5, 3)
    g1, g2 = (torch.Generator().manual_seed(7) for _ in range(2))
    plain = DejaVid(mu, "hv", fixed_path=False, generator=g1, backend="ref")
    same = DejaVid(mu, "hv", fixed_path=False, generator=g2, backend="ref",
                   proto_class=torch.arange(3))
    assert same.pool is None
    assert same.state_dict().keys() == plain.state_dict().keys()
    for m in (plain, same):
        m(x, offsets).backward(up)
    assert torch.equal(plain(x, offsets), same(x, offsets))
    assert torch.equal(plain.mu.grad, same.mu.grad)
    assert torch.equal(plain.theta.grad, same.theta.grad)


def test_one_prototype_per_class_keeps_the_centroids_and_their_cache(tmp_path):
    ds = _dataset()
    spec = CentroidSpec(**SPEC)
    meta = cen.centroid_meta(ds.index, "train", spec)
    assert "centroids_per_class" not in meta and "band" not in meta   # old caches stay valid
    mu, path = cen.load_or_compute_centroids(ds, spec, tmp_path)
    mu2, proto_class = cen.flatten_prototypes(mu)
    assert mu2 is mu and torch.equal(proto_class, torch.arange(3))
    # today's computation, written out: DBA from the medoid of the resampled videos
    rng = np.random.default_rng(spec.seed)
    members = [n for n in range(len(ds)) if ds.index.labels[ds.rows[n]] == 0]
    chosen = np.sort(rng.choice(np.array(members), size=len(members), replace=False))
    samples = torch.stack([cen.resample(ds[int(n)][0], 6) for n in chosen])
    start = samples[cen.medoid_index(samples, "hv", "ref")]
    assert torch.equal(mu[0], cen.dba(samples, start, "hv", 5, "ref"))


def test_soft_minimum_bounds_and_limits():
    proto_class = torch.tensor([0, 0, 0, 1, 2, 2])
    pool = SoftMinPool(proto_class).double()
    d = torch.tensor([[1.0, 4.0, 2.0, 7.0, 3.0, 3.0], [5.0, 5.0, 9.0, 0.5, 8.0, 2.0]],
                     dtype=torch.float64)
    out = pool(d)
    assert out.shape == (2, 3)
    assert torch.equal(out[:, 1], d[:, 3])                   # one prototype: its distance
    for c, idx in ((0, [0, 1, 2]), (2, [4, 5])):
        assert bool((out[:, c] >= d[:, idx].min(1).values - 1e-9).all())
        assert bool((out[:, c] <= d[:, idx].mean(1) + 1e-9).all())
    assert torch.allclose(out[0, 2], torch.tensor(3.0, dtype=torch.float64))  # equal: that value
    with torch.no_grad():
        pool.log_temperature.fill_(-8.0)
    cold = pool(d)
    assert torch.allclose(cold[:, 0], d[:, :3].min(1).values, atol=1e-2)
    with pytest.raises(ValueError, match="classes \\[1\\]"):
        SoftMinPool(torch.tensor([0, 2]))


def test_pool_calibration_is_the_within_class_spread():
    pool = SoftMinPool(torch.tensor([0, 0, 1]))
    d = torch.tensor([[1.0, 3.0, 9.0], [2.0, 6.0, 0.0]])
    pool.calibrate(d)
    # deviations from the class-0 mean: +-1 and +-2 -> rms sqrt((1 + 1 + 4 + 4) / 4)
    assert pool.log_temperature.exp().item() == pytest.approx(np.sqrt(2.5), rel=1e-6)


def test_k_medoids_separates_clusters_and_keeps_medoids_first():
    g = torch.Generator().manual_seed(0)
    pts = torch.cat([torch.randn(5, 2, generator=g), 10 + torch.randn(4, 2, generator=g)])
    d = torch.cdist(pts, pts)
    clusters = cen.k_medoids(d, 2)
    assert sorted(sorted(c) for c in clusters) == [[0, 1, 2, 3, 4], [5, 6, 7, 8]]
    for c in clusters:
        within = d[c][:, c].sum(1)
        assert c[0] == c[int(torch.argmin(within))]
    assert cen.k_medoids(d[:2, :2], 4) == [[0], [1]] or len(cen.k_medoids(d[:2, :2], 4)) == 2


def test_prototypes_split_each_class_and_small_classes_get_fewer(tmp_path):
    ds = _dataset()
    spec = CentroidSpec(**SPEC, centroids_per_class=3)
    blocks, path = cen.load_or_compute_centroids(ds, spec, tmp_path)
    mu, proto_class = cen.flatten_prototypes(blocks)
    assert blocks.shape[:2] == (3, 3)
    assert proto_class.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]   # class 2 has 2 videos
    assert mu.shape == (8, 6, 2) and bool(torch.isfinite(mu).all())
    again, path2 = cen.load_or_compute_centroids(ds, spec, tmp_path)   # from the cache
    assert path2 == path and torch.equal(again.isnan(), blocks.isnan())
    assert torch.equal(torch.nan_to_num(again), torch.nan_to_num(blocks))
    # M = 2 on two-shape classes: one rising and one falling prototype per class
    mu2, pc = cen.flatten_prototypes(cen.load_or_compute_centroids(
        ds, CentroidSpec(**SPEC, centroids_per_class=2), None)[0])
    for c in (0, 1):
        slopes = sorted(float(p[-1, 0] - p[0, 0]) for p in mu2[pc == c])
        assert slopes[0] < -1.0 and slopes[1] > 1.0, slopes


@pytest.mark.parametrize("band", [None, 0.2])
@pytest.mark.parametrize("pattern", ["hv", "hvd"])
def test_gradcheck_with_several_prototypes(pattern, band):
    x, offsets, mu, theta, _ = make_inputs((3, 1, 6), 2, 3, 5, dtype=torch.float64, seed=4)
    pool = SoftMinPool(torch.tensor([0, 0, 1, 1, 1])).double()
    from dejavid.alignment.op import align

    def dist(x, mu, theta, log_t):
        with torch.no_grad():
            pool.log_temperature.copy_(log_t)
        d, _ = align(x, offsets, mu, theta, pattern, backend="ref", band=band)
        t = log_t.exp()
        z = (-d / t)[:, pool.members.clamp(min=0)].masked_fill(pool.members < 0, float("-inf"))
        return -t * (torch.logsumexp(z, -1) - pool.counts.double().log())

    log_t = torch.tensor(0.3, dtype=torch.float64)
    args = tuple(t.clone().requires_grad_() for t in (x, mu, theta, log_t))
    assert torch.autograd.gradcheck(dist, args, eps=1e-6, atol=1e-6)
    # and the module itself computes the same function
    with torch.no_grad():
        pool.log_temperature.fill_(0.3)
    d, _ = align(x, offsets, mu, theta, pattern, backend="ref", band=band)
    assert torch.allclose(pool(d), dist(x, mu, theta, log_t))


@pytest.mark.parametrize("band", [None, 0.1])
def test_numba_matches_reference_with_prototypes_and_band(band):
    pytest.importorskip("numba")
    inputs = make_inputs((2, 7, 33, 12), 6, 8, 5)[:4]
    want = _pooled_run(inputs, "hvd", band, "ref")
    for a, b in zip(want, _pooled_run(inputs, "hvd", band, "numba")):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def _pooled_run(inputs, pattern, band, backend):
    """(class distances, grad mu, grad theta, grad log t) of DejaVid with prototypes of
    classes [0, 0, 1, 2, 2] on ``inputs`` = (x, offsets, mu, theta), loss = sum of distances."""
    x, offsets, mu, theta = inputs
    m = DejaVid(mu, pattern, fixed_path=True, backend=backend, band=band,
                proto_class=torch.tensor([0, 0, 1, 2, 2]),
                generator=torch.Generator().manual_seed(1))
    d = m(x, offsets)
    d.sum().backward()
    return d.detach(), m.mu.grad, m.theta.grad, m.pool.log_temperature.grad


def test_fit_with_two_prototypes_trains_pool_and_round_trips_checkpoint(tmp_path):
    ds = _dataset()
    settings = TrainSettings(centroids=CentroidSpec(**SPEC, centroids_per_class=2),
                             model=ModelSpec(backend="ref", band=0.3),
                             optim=OptimSpec(lr=0.05), loop=LoopSpec(num_epochs=3, batch_size=8))
    res = fit(ds, ds, settings, device="cpu", run_dir=tmp_path / "run", progress=False,
              log=lambda *_: None)
    model = res.model
    assert model.pool is not None and model.mu.shape[0] == 6 and model.num_classes == 3
    assert model.band == 0.3
    opt = build_optimizer(model, settings.optim)
    assert any(g.get("name") == "pool" for g in opt.param_groups)
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert torch.equal(ckpt["pool"]["proto_class"], torch.tensor([0, 0, 1, 1, 2, 2]))
    assert ckpt["pool"]["log_temperature"] == model.pool.log_temperature.detach()
    rebuilt = model_from_checkpoint(ckpt, settings.model)
    assert rebuilt.band == 0.3 and rebuilt.pool is not None
    batch = ds.batch(list(range(len(ds))))
    model.fixed_path = False
    with torch.no_grad():
        assert torch.equal(rebuilt(batch.x, batch.offsets), model(batch.x, batch.offsets))
    fresh = DejaVid(torch.zeros_like(model.mu), logit_head="temperature",
                    proto_class=torch.tensor([0, 0, 1, 1, 2, 2]))
    restore_model(fresh, ckpt)
    assert fresh.pool.log_temperature == model.pool.log_temperature.detach()
    assert res.best_top1 > 0.5


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
@pytest.mark.parametrize("M, P, resampled", [("2", 6, False), ("all", 15, False),
                                             ("all", 15, True)])
def test_torchrun_two_ranks_equal_single_process_with_prototypes_and_band(tmp_path, M, P,
                                                                          resampled):
    """M = 2, or every sampled series (leave-one-out, each rank leaving out its own
    videos' prototypes), and a band under DDP (one rank's share of the last batch is
    empty), also with every series resampled to K steps (the last candidate of tune: cv):
    the same parameters, pool temperature and history as one process."""
    import sys
    from conftest import ROOT
    from test_distributed import _run, _torchrun, _write_dataset
    cfg = _write_dataset(tmp_path)
    train = str(ROOT / "train_dejavid.py")
    extra = ["--centroids_per_class", M, "--band", "0.3", "--no-progress",
             *(["--resample_inputs", "true"] if resampled else [])]
    _run([sys.executable, train, "--config", str(cfg), "--run_name", "single", *extra], ROOT)
    out = _run(_torchrun(2) + [train, "--config", str(cfg), "--run_name", "ddp", *extra], ROOT)
    assert "2 process(es)" in out
    a, b = (torch.load(tmp_path / "runs" / r / "last.pt", weights_only=True)
            for r in ("single", "ddp"))
    assert a["model"]["mu"].shape[0] == P and torch.equal(a["pool"]["proto_class"],
                                                          b["pool"]["proto_class"])
    assert a["config"]["resample_inputs"] is b["config"]["resample_inputs"] is resampled
    if M == "all":
        assert torch.equal(a["pool"]["proto_rows"], b["pool"]["proto_rows"])
    for x, y in ((a["model"]["mu"], b["model"]["mu"]), (a["model"]["theta"], b["model"]["theta"]),
                 (a["pool"]["log_temperature"], b["pool"]["log_temperature"])):
        assert (x - y).abs().max().item() < 1e-5
    for ra, rb in zip(a["history"], b["history"], strict=True):
        assert ra["val_top1"] == pytest.approx(rb["val_top1"], abs=1e-5)


def test_raw_centroid_init_averages_the_series_as_they_are(tmp_path):
    """centroid_init: raw runs DBA over the unresampled series (from the same resampled
    medoid); with every series already K steps long it is the resampling init."""
    ds = _dataset()
    resampled = CentroidSpec(**SPEC)
    raw = CentroidSpec(**SPEC, init="raw")
    assert cen.centroid_meta(ds.index, "train", raw)["centroid_init"] == "raw"
    mu_res, _ = cen.load_or_compute_centroids(ds, resampled, tmp_path)
    mu_raw, _ = cen.load_or_compute_centroids(ds, raw, tmp_path)
    assert mu_raw.shape == mu_res.shape and bool(torch.isfinite(mu_raw).all())
    assert not torch.equal(mu_raw, mu_res)   # lengths 9-14 against K = 6
    # by hand, class 0: DBA over the raw series from the resampled medoid
    rng = np.random.default_rng(0)
    members = [n for n in range(len(ds)) if ds.index.labels[ds.rows[n]] == 0]
    chosen = np.sort(rng.choice(np.array(members), size=len(members), replace=False))
    series = [ds[int(n)][0] for n in chosen]
    samples = torch.stack([cen.resample(x, 6) for x in series])
    start = samples[cen.medoid_index(samples, "hv", "ref")]
    assert torch.equal(mu_raw[0], cen.dba(series, start, "hv", 5, "ref"))
    # equal lengths = K: nothing to resample, the two inits agree
    X = [np.random.default_rng(n).standard_normal((6, 2)).astype(np.float32) for n in range(8)]
    index, tensors = index_from_arrays(X, [0, 1] * 4)
    eq = ArrayDataset(index, tensors)
    assert torch.equal(cen.load_or_compute_centroids(eq, resampled, None)[0],
                       cen.load_or_compute_centroids(eq, raw, None)[0])


def test_dba_centroid_baseline_takes_the_nearest_prototype(tmp_path):
    from dejavid.baselines.classic import centroid_distances
    ds = _dataset()
    mu4, _ = cen.load_or_compute_centroids(ds, CentroidSpec(**SPEC, centroids_per_class=3), None)
    assert mu4.dim() == 4 and bool(torch.isnan(mu4[2, 2]).all())     # class 2: 2 prototypes
    dist, labels = centroid_distances(mu4, ds, "hv", backend="ref")
    flat, pc = cen.flatten_prototypes(mu4)
    every, _ = centroid_distances(flat, ds, "hv", backend="ref")     # [N, P]
    for c in range(3):
        assert torch.equal(dist[:, c], every[:, pc == c].min(1).values)


def test_emulated_cuda_matches_reference_with_prototypes_and_band(monkeypatch):
    """The CUDA backend (its kernels compiled for the host) under the model with M > 1 and
    a band: the same pooled distances and gradients as the reference."""
    import sys
    from conftest import ROOT
    sys.path.insert(0, str(ROOT / "kernel_setup" / "emulation"))
    import host_emulation
    if host_emulation.compiler() is None:
        pytest.skip("no host C++ compiler")
    from dejavid.alignment import cuda as align_cuda
    from dejavid.alignment import op
    monkeypatch.setattr(align_cuda, "_C", host_emulation.EmulatedKernels(host_emulation.build()))
    inputs = make_inputs((2, 7, 20), 3, 5, 5)[:4]
    want = _pooled_run(inputs, "hv", 0.2, "ref")
    monkeypatch.setattr(op, "get_backend", lambda device, name="auto": align_cuda.BACKEND)
    for a, b in zip(want, _pooled_run(inputs, "hv", 0.2, "cuda")):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_fit_with_given_centroids_and_their_classes(tmp_path):
    """fit(mu_init=...) trains from the given series: [C, K, F] one per class, or [P, K, F]
    prototypes of the classes ``proto_class``."""
    ds = _dataset()
    settings = TrainSettings(centroids=CentroidSpec(**SPEC), model=ModelSpec(backend="ref"),
                             optim=OptimSpec(lr=0.05), loop=LoopSpec(num_epochs=1, batch_size=8))
    F = ds.index.feature_size
    K = settings.centroids.num_timesteps
    mu = torch.randn(3, K, F, generator=torch.Generator().manual_seed(0))
    res = fit(ds, ds, settings, device="cpu", mu_init=mu, progress=False, log=lambda *_: None)
    assert res.model.pool is None and res.model.mu.shape == (3, K, F)
    classes = torch.tensor([0, 0, 1, 2, 2])
    mu5 = torch.randn(5, K, F, generator=torch.Generator().manual_seed(1))
    res = fit(ds, ds, settings, device="cpu", mu_init=mu5, proto_class=classes, progress=False,
              log=lambda *_: None)
    assert res.model.pool is not None and res.model.num_classes == 3
    assert torch.equal(res.model.pool.proto_class, classes)


# --- centroids_per_class: all (every sampled series its own prototype, leave-one-out) ---

def test_all_series_are_the_prototypes_in_sampled_order(tmp_path):
    ds = _dataset()
    spec = CentroidSpec(**{**SPEC, "sample_size_per_class": 4}, centroids_per_class="all")
    blocks, path = cen.load_or_compute_centroids(ds, spec, tmp_path)
    mu, proto_class = cen.flatten_prototypes(blocks)
    rows = cen.sampled_rows(ds, spec)
    # 4 of the 12 videos of classes 0 and 1, both videos of class 2; rows in class order
    assert proto_class.tolist() == [0] * 4 + [1] * 4 + [2] * 2
    assert rows.shape == proto_class.shape
    assert [int(ds.index.labels[r]) for r in rows] == proto_class.tolist()
    for p, r in enumerate(rows.tolist()):
        n = list(ds.rows).index(r)
        assert torch.equal(mu[p], cen.resample(ds[n][0], 6))      # the series itself
    again, path2 = cen.load_or_compute_centroids(ds, spec, tmp_path)
    assert path2 == path and "centroids_per_class" in torch.load(path)["meta"]
    # raw: the DBA of the one series from its resampled start (it keeps its own values)
    raw = cen.flatten_prototypes(cen.load_or_compute_centroids(
        ds, CentroidSpec(**{**SPEC, "sample_size_per_class": 4}, centroids_per_class="all",
                         init="raw"), None)[0])[0]
    assert raw.shape == mu.shape and bool(torch.isfinite(raw).all())
    assert not torch.equal(raw, mu)


def test_leave_one_out_pool_leaves_out_only_the_own_prototype():
    proto_class = torch.tensor([0, 0, 0, 1, 2, 2])
    proto_rows = torch.tensor([10, 11, 12, 13, 14, 15])
    pool = SoftMinPool(proto_class, proto_rows).double()
    d = torch.tensor([[1.0, 4.0, 2.0, 7.0, 3.0, 5.0], [5.0, 5.0, 9.0, 0.5, 8.0, 2.0],
                      [6.0, 1.0, 2.0, 3.0, 0.0, 4.0]], dtype=torch.float64)
    rows = torch.tensor([10, 13, 14])   # own prototypes: 0 (class 0), 3 (class 1 alone), 4
    out = pool(d, rows)
    t = pool.log_temperature.exp()

    def softmin(v):
        v = torch.tensor(v, dtype=torch.float64)
        return -t * (torch.logsumexp(-v / t, 0) - np.log(len(v)))
    assert torch.allclose(out[0, 0], softmin([4.0, 2.0]))          # own (1.0) left out
    assert torch.allclose(out[1, 1], d[1, 3])                       # a class's only one stays
    assert torch.allclose(out[2, 2], softmin([4.0]))                # own (0.0) left out
    untouched = pool(d)
    assert torch.equal(out[0, 1:], untouched[0, 1:]) and torch.equal(out[1], untouched[1])
    assert torch.equal(out[2, :2], untouched[2, :2])
    # without proto_rows (M clusters), rows change nothing
    plain = SoftMinPool(proto_class).double()
    assert torch.equal(plain(d, rows), plain(d))
    with pytest.raises(ValueError, match="one row per"):
        SoftMinPool(proto_class, proto_rows[:3])


def test_gradcheck_of_the_leave_one_out_pool():
    from torch.func import functional_call
    pool = SoftMinPool(torch.tensor([0, 0, 1, 1, 1]), torch.tensor([3, 4, 5, 6, 7])).double()
    d = torch.rand(3, 5, dtype=torch.float64, requires_grad=True)
    log_t = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    rows = torch.tensor([4, 6, 0])
    assert torch.autograd.gradcheck(
        lambda d, lt: functional_call(pool, {"log_temperature": lt}, (d, rows)), (d, log_t))


def test_model_leaves_own_prototype_out_in_training_only():
    ds = _dataset()
    spec = CentroidSpec(**SPEC, centroids_per_class="all")
    mu, pc = cen.flatten_prototypes(cen.load_or_compute_centroids(ds, spec, None)[0])
    rows = cen.sampled_rows(ds, spec)
    model = DejaVid(mu, "hvd", fixed_path=False, w_one_init=True, backend="ref",
                    proto_class=pc, proto_rows=rows)
    batch = ds.batch(list(range(len(ds))))
    with torch.no_grad():
        model.train()
        loo = model(batch.x, batch.offsets, batch.rows)
        model.eval()
        free = model(batch.x, batch.offsets, batch.rows)
        protos = model.prototype_distances(batch.x, batch.offsets)
    assert torch.equal(free, model.pool(protos))
    lab = torch.as_tensor(ds.index.labels[batch.rows])
    t = model.pool.log_temperature.exp()
    for n in range(len(ds)):
        keep = (pc == lab[n]) & (rows != batch.rows[n])     # its class, without itself
        assert int(keep.sum()) == int((pc == lab[n]).sum()) - 1   # each video is one prototype
        v = protos[n, keep]
        want = -t * (torch.logsumexp(-v / t, 0) - torch.log(torch.tensor(float(len(v)))))
        assert torch.allclose(loo[n, lab[n]], want, rtol=1e-5)
    other = ~torch.nn.functional.one_hot(lab, 3).bool()
    assert torch.equal(loo[other], free[other])           # other classes unchanged


def test_fit_with_all_series_round_trips_proto_rows(tmp_path):
    ds = _dataset()
    settings = TrainSettings(centroids=CentroidSpec(**SPEC, centroids_per_class="all",
                                                    step_pattern="hvd"),
                             model=ModelSpec(step_pattern="hvd", backend="ref", band=0.3),
                             optim=OptimSpec(lr=0.05), loop=LoopSpec(num_epochs=3, batch_size=8))
    res = fit(ds, ds, settings, device="cpu", run_dir=tmp_path / "run", progress=False,
              log=lambda *_: None)
    model = res.model
    assert model.mu.shape[0] == len(ds) and torch.equal(
        model.pool.proto_rows, cen.sampled_rows(ds, settings.centroids))
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert torch.equal(ckpt["pool"]["proto_rows"], model.pool.proto_rows)
    rebuilt = model_from_checkpoint(ckpt, settings.model)
    assert torch.equal(rebuilt.pool.proto_rows, model.pool.proto_rows)
    batch = ds.batch(list(range(len(ds))))
    model.fixed_path = False
    model.eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(batch.x, batch.offsets), model(batch.x, batch.offsets))
    assert res.best_top1 > 0.5


def test_centroids_per_class_all_is_checked_in_config_and_spec():
    from dejavid.config.files import load_config
    assert load_config(None, ["--centroids_per_class", "all"])["centroids_per_class"] == "all"
    for bad in ("many", "0"):
        with pytest.raises(ValueError, match="centroids_per_class"):
            load_config(None, ["--centroids_per_class", bad])
    for bad in ("some", 0, 2.5, True):
        with pytest.raises(ValueError, match="centroids_per_class"):
            CentroidSpec(centroids_per_class=bad)
