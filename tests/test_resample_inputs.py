"""``resample_inputs`` (config key, ``DejaVidClassifier(resample_inputs=...)``, a candidate
of ``tune: cv``): every sample is resampled to K steps before it is aligned.

- resample_packed equals the centroid initialisation's per-series resampling (an
  independent implementation: torch's interpolate), on odd lengths, T = 1, T = K, K = 1;
  samples of K steps come back bitwise; its gradient passes float64 gradcheck;
- the layer with resample_inputs equals the plain layer on series resampled beforehand
  (values and every gradient), on the reference and numba backends, with a band and
  several prototypes;
- off (the default) is bitwise the paper's layer;
- the key is checked (a flag; not with centroid_init: raw), reaches the model through
  config, estimator and checkpoint, and is a tuning candidate's change.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dejavid.config.settings import CentroidSpec, LoopSpec, ModelSpec, TrainSettings, resolve_auto
from dejavid.data.arrays import ArrayDataset, index_from_arrays
from dejavid.model.centroids import resample
from dejavid.model.layer import DejaVid, resample_packed
from dejavid.training import tune
from dejavid.training.run import fit, model_from_checkpoint
from helpers import MAP_KEYS, write_dataset
from parity import make_inputs

LENGTHS = [1, 2, 5, 7, 13, 40]


@pytest.mark.parametrize("K", [1, 2, 7, 13, 16])
def test_resample_packed_equals_per_series_interpolation(K):
    x, offsets, *_ = make_inputs(LENGTHS, 3, K, 1, dtype=torch.float64, seed=K)
    got, got_off = resample_packed(x, offsets, K)
    assert got.shape == (len(LENGTHS) * K, 3)
    assert torch.equal(got_off, torch.arange(len(LENGTHS) + 1) * K)
    for b in range(len(LENGTHS)):
        want = resample(x[offsets[b]:offsets[b + 1]], K)
        torch.testing.assert_close(got[b * K:(b + 1) * K], want, rtol=1e-12, atol=1e-12)
        if LENGTHS[b] == K:      # a K-step sample is its own resampling
            assert torch.equal(got[b * K:(b + 1) * K], x[offsets[b]:offsets[b + 1]])


def test_resample_packed_keeps_k_step_batches_bitwise_and_is_differentiable():
    x, offsets, *_ = make_inputs([9, 9, 9], 2, 9, 1, seed=3)
    same, off = resample_packed(x, offsets, 9)
    assert same is x and off is offsets
    xd, od, *_ = make_inputs([3, 8, 1], 2, 5, 1, dtype=torch.float64, seed=4)
    xd.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: resample_packed(v, od, 5)[0], (xd,))


def _pre_resampled(x, offsets, K):
    parts = [resample(x[offsets[b]:offsets[b + 1]], K) for b in range(len(offsets) - 1)]
    return torch.cat(parts), torch.arange(len(parts) + 1) * K


@pytest.mark.parametrize("backend", ["ref", "numba"])
@pytest.mark.parametrize("band,classes", [(None, None), (0.2, [0, 0, 1, 2, 2])])
def test_layer_equals_the_plain_layer_on_resampled_series(backend, band, classes):
    if backend == "numba":
        pytest.importorskip("numba")
    K, F = 6, 3
    proto_class = None if classes is None else torch.tensor(classes)
    P = 3 if classes is None else len(classes)
    x, offsets, mu, theta, _ = make_inputs([4, 11, 6, 1, 17], F, K, P, seed=7)
    xr, offr = _pre_resampled(x, offsets, K)
    outs = []
    for inputs, flag in (((x, offsets), True), ((xr, offr), False)):
        model = DejaVid(mu, "hvd", fixed_path=True, backend=backend, band=band,
                        logit_head="temperature", proto_class=proto_class,
                        resample_inputs=flag)
        model.theta.data.copy_(theta)
        xin = inputs[0].clone().requires_grad_(True)
        dist = model(xin, inputs[1])
        dist.sum().backward()
        outs.append((dist.detach(), model.mu.grad, model.theta.grad, xin))
    (d1, gm1, gt1, x1), (d2, gm2, gt2, _) = outs
    torch.testing.assert_close(d1, d2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gm1, gm2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gt1, gt2, rtol=1e-5, atol=1e-5)
    assert x1.grad is not None and x1.grad.shape == x.shape
    assert torch.isfinite(x1.grad).all() and x1.grad.abs().sum() > 0


def test_off_is_bitwise_the_papers_layer():
    x, offsets, mu, theta, _ = make_inputs([4, 11, 6], 2, 5, 3, seed=2)
    a = DejaVid(mu, "hv", backend="ref")
    b = DejaVid(mu, "hv", backend="ref", resample_inputs=False)
    for m in (a, b):
        m.theta.data.copy_(theta)
    assert torch.equal(a(x, offsets), b(x, offsets))


def test_key_is_checked_in_config_spec_and_estimator(tmp_path):
    from dejavid.config.files import load_config
    from dejavid import DejaVidClassifier
    with pytest.raises(ValueError, match="resample_inputs"):
        ModelSpec(resample_inputs="yes")
    with pytest.raises(ValueError, match="centroid_init: raw"):
        TrainSettings(centroids=CentroidSpec(init="raw"), model=ModelSpec(resample_inputs=True))
    path = tmp_path / "c.yaml"
    path.write_text("resample_inputs: maybe\n")
    with pytest.raises(ValueError, match="resample_inputs"):
        load_config(str(path), [])
    with pytest.raises(ValueError, match="resample_inputs"):
        DejaVidClassifier(resample_inputs="often", num_epochs=1).fit(
            [np.zeros((4, 1), np.float32)] * 4, [0, 0, 1, 1])
    assert DejaVidClassifier(resample_inputs=True)._settings().model.resample_inputs


def test_tuning_candidate_sets_it_and_is_left_out_under_raw_init():
    base = TrainSettings(loop=LoopSpec(num_epochs=40)).resolved([8] * 12)
    cand = {"resample_inputs": True, "epochs_at_most": 30}
    assert cand in [{k: v for k, v in g.items() if k in cand} for g in tune.TUNE_GRID]
    c = tune.candidate_settings(base, cand, [8] * 12)
    assert c.model.resample_inputs and not base.model.resample_inputs
    assert c.centroids.num_timesteps == base.centroids.num_timesteps == 8   # median 8 <= K
    assert tune.config_changes(cand, c) == {"resample_inputs": True, "num_timesteps": 8,
                                            "num_epochs": 30}
    with pytest.raises(ValueError, match="lengths"):
        tune.candidate_settings(base, cand)
    labels = np.array([0] * 6 + [1] * 6)
    raw = TrainSettings(centroids=CentroidSpec(init="raw"), loop=LoopSpec(num_epochs=40))
    kept, skipped = tune.affordable(tune.TUNE_GRID, labels, raw)
    assert all(not g.get("resample_inputs") for g in kept)
    assert any("centroid_init: raw" in s for s in skipped)
    kept, skipped = tune.affordable(tune.TUNE_GRID, labels, base)
    assert len(kept) == len(tune.TUNE_GRID) and not skipped


def _long_and_short(seed=0, per_class=6):
    """2 classes told apart by shape; lengths 5-60, so K = 8 resamples most series."""
    g = np.random.default_rng(seed)
    X, y = [], []
    for c in range(2):
        for _ in range(per_class):
            T = int(g.integers(5, 61))
            t = np.linspace(0, 1, T)[:, None]
            shape = np.sin(np.pi * t) if c == 0 else np.cos(np.pi * t)
            X.append((shape + 0.05 * g.standard_normal((T, 1))).astype(np.float32))
            y.append(c)
    return X, y


def test_fit_trains_it_and_the_checkpoint_keeps_it(tmp_path):
    X, y = _long_and_short()
    index, tensors = index_from_arrays(X, y)
    ds = ArrayDataset(index, tensors)
    settings = TrainSettings(centroids=CentroidSpec(num_timesteps=8, dba_max_iter=5,
                                                    backend="ref"),
                             model=ModelSpec(backend="ref", resample_inputs=True),
                             loop=LoopSpec(num_epochs=3, batch_size=4))
    res = fit(ds, ds, settings, device="cpu", run_dir=tmp_path / "run", progress=False,
              log=lambda *_: None)
    assert res.model.resample_inputs
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    rebuilt = model_from_checkpoint(ckpt, settings.model)
    assert rebuilt.resample_inputs
    batch = ds.batch(list(range(len(ds))))
    res.model.fixed_path = False
    res.model.eval()
    with torch.no_grad():
        d = res.model(batch.x, batch.offsets)
        assert torch.equal(rebuilt(batch.x, batch.offsets), d)
        # what it computes is the plain layer's on series resampled beforehand
        plain = model_from_checkpoint(ckpt, ModelSpec(backend="ref"))
        xr, offr = _pre_resampled(batch.x, batch.offsets, 8)
        torch.testing.assert_close(plain(xr, offr), d, rtol=1e-5, atol=1e-5)
    assert res.best_top1 == 1.0


def _train_script(tmp_path, X, y, split_of, *args) -> dict:
    """train_dejavid on X, y written under tmp_path with resample_inputs on: the last
    checkpoint."""
    import train_dejavid
    paths = write_dataset(tmp_path / "d", {f"v{n:02d}": (torch.from_numpy(x), int(lab), s)
                                           for n, (x, lab, s) in enumerate(zip(X, y, split_of))})
    data = [a for key in MAP_KEYS for a in (f"--{key}", str(paths[key]))]
    rc = train_dejavid.main([*data, "--id2feats", str(paths["id2feats"]), *args,
                             "--batch_size", "4", "--resample_inputs", "true", "--device", "cpu",
                             "--cache_dir", str(tmp_path / "cache"),
                             "--output_dir", str(tmp_path / "runs"), "--run_name", "r",
                             "--no-progress"])
    assert rc == 0
    return torch.load(tmp_path / "runs" / "r" / "last.pt", weights_only=False)


def test_train_dejavid_and_estimator_take_it(tmp_path):
    from dejavid import DejaVidClassifier
    X, y = _long_and_short(per_class=5)
    ckpt = _train_script(tmp_path, X, y, ["train" if n % 5 else "val" for n in range(len(X))],
                         "--num_timesteps", "8", "--dba_max_iter", "3", "--num_epochs", "2")
    assert ckpt["config"]["resample_inputs"] is True
    clf = DejaVidClassifier(num_timesteps=8, num_epochs=2, dba_max_iter=3, backend="ref",
                            device="cpu", tune="none", resample_inputs=True).fit(X, y)
    assert clf.model_.resample_inputs
    assert clf.predict(X).shape == (len(X),)


def test_resampled_k_keeps_the_cells_per_pair():
    # sqrt(K * median) steps when the median is above K: a K' x K' grid has about the
    # K x median cells of the unresampled alignment; K itself otherwise.
    from dejavid.config.settings import (auto_num_timesteps, median_length,
                                         resampled_num_timesteps)
    assert median_length([5, 1, 9]) == 5 and median_length([4, 9, 1, 6]) == 5
    assert resampled_num_timesteps(128, [1460] * 3) == 432      # round(432.3)
    assert resampled_num_timesteps(128, [427, 10, 2000]) == 234
    assert resampled_num_timesteps(8, [30, 31, 29]) == 15        # round(sqrt(240))
    assert resampled_num_timesteps(24, [24] * 5) == 24
    assert resampled_num_timesteps(64, [20, 30, 40]) == 64
    for lengths in ([1460] * 4, [7, 26, 15], [300, 100, 200]):
        K = auto_num_timesteps(lengths)
        assert auto_num_timesteps(lengths, True) == resampled_num_timesteps(K, lengths)
    assert auto_num_timesteps([1460] * 4) == 128 and auto_num_timesteps([1460] * 4, True) == 432
    base = TrainSettings(loop=LoopSpec(num_epochs=40)).resolved([1460] * 12)
    assert base.centroids.num_timesteps == 128
    cand = {"resample_inputs": True, "epochs_at_most": 30}
    c = tune.candidate_settings(base, cand, [1460] * 12)
    assert c.centroids.num_timesteps == 432
    assert tune.config_changes(cand, c)["num_timesteps"] == 432
    # a model that already resamples keeps its K; a K still 'auto' resolves by the rule
    again = tune.candidate_settings(c, cand, [1460] * 12)
    assert again.centroids.num_timesteps == 432
    auto = TrainSettings(model=ModelSpec(resample_inputs=True))
    assert auto.resolved([1460] * 3).centroids.num_timesteps == 432
    assert TrainSettings().resolved([1460] * 3).centroids.num_timesteps == 128
    cfg = {"num_timesteps": "auto", "num_epochs": 5, "resample_inputs": True}
    notes = resolve_auto(cfg, [1460] * 3)
    assert cfg["num_timesteps"] == 432 and "sqrt(128 * median)" in notes[0]


def test_auto_k_with_resampling_is_the_same_in_script_and_estimator(tmp_path):
    # num_timesteps auto + resample_inputs on series with a median above 128 steps:
    # train_dejavid and the estimator both train round(sqrt(128 * median)) steps
    from dejavid import DejaVidClassifier
    from dejavid.config.settings import auto_num_timesteps, median_length
    g = np.random.default_rng(4)
    X = [np.sin(np.linspace(0, 3 + c, int(T)))[:, None].astype(np.float32)
         + 0.1 * g.standard_normal((int(T), 1)).astype(np.float32)
         for c, T in zip([0, 1] * 4, g.integers(150, 260, 8))]
    y = [0, 1] * 4
    train_lengths = [len(x) for n, x in enumerate(X) if n % 4 != 3]
    K = auto_num_timesteps(train_lengths, True)
    median = median_length(train_lengths)
    assert median == (sorted(train_lengths)[2] + sorted(train_lengths)[3] + 1) // 2
    assert K > 128 and K == round((128 * median) ** 0.5)
    ckpt = _train_script(tmp_path, X, y, ["val" if n % 4 == 3 else "train" for n in range(8)],
                         "--num_timesteps", "auto", "--dba_max_iter", "2", "--num_epochs", "1")
    assert ckpt["config"]["num_timesteps"] == K and ckpt["model"]["mu"].shape[-2] == K
    train = [x for n, x in enumerate(X) if n % 4 != 3]
    clf = DejaVidClassifier(num_epochs=1, dba_max_iter=2, device="cpu", tune="none",
                            resample_inputs=True).fit(train, [y[n] for n in range(8) if n % 4 != 3])
    assert clf.model_.mu.shape[-2] == K
