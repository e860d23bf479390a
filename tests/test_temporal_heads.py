"""The learned temporal baselines: shapes, padding, seeds, learning, estimator API."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402

from dejavid.baselines.temporal_heads import (AttentiveProbeClassifier, GRUClassifier, pad,  # noqa: E402
                                    pool_time)

HEADS = [GRUClassifier, AttentiveProbeClassifier]


def _series(n: int, seed: int = 0, F: int = 3, lengths=(5, 20)):
    """Class 1 has a positive level in feature 0, class 0 a negative one: trivially separable."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for k in range(n):
        label = k % 2
        T = int(rng.integers(lengths[0], lengths[1] + 1))
        x = rng.normal(size=(T, F)).astype(np.float32) * 0.3
        x[:, 0] += 2.0 if label else -2.0
        X.append(x)
        y.append(["neg", "pos"][label])
    return X, np.array(y)


@pytest.mark.parametrize("cls", HEADS)
def test_shapes_and_labels(cls):
    X, y = _series(12)
    clf = cls(steps=2, hidden=8).fit(X, y)
    proba = clf.predict_proba(X[:5])
    assert proba.shape == (5, 2)
    assert np.allclose(proba.sum(1), 1.0, atol=1e-6)
    assert set(clf.predict(X)) <= {"neg", "pos"}
    assert list(clf.classes_) == ["neg", "pos"]


@pytest.mark.parametrize("cls", HEADS)
def test_padding_does_not_change_the_output(cls):
    X, y = _series(10)
    clf = cls(steps=3, hidden=8).fit(X, y)
    short = [torch.from_numpy(X[0])]                                   # T = len(X[0]) alone
    long = [torch.from_numpy(X[0]), torch.randn(60, 3) * 100]          # padded up to 60 steps
    with torch.no_grad():
        alone = clf.net_(*pad(short))[0]
        x, mask = pad(long)
        padded = clf.net_(x, mask)[0]
        x[0, mask[0].sum():] = 1e3                                     # garbage in the padding
        garbage = clf.net_(x, mask)[0]
    diff = max((alone - padded).abs().max().item(), (alone - garbage).abs().max().item())
    print(cls.__name__, "max |logit difference| from padding:", diff)
    assert diff < 1e-5


@pytest.mark.parametrize("cls", HEADS)
def test_reproducible_from_a_seed(cls):
    X, y = _series(16)
    a = cls(steps=5, hidden=8, seed=3).fit(X, y).predict_proba(X)
    b = cls(steps=5, hidden=8, seed=3).fit(X, y).predict_proba(X)
    c = cls(steps=5, hidden=8, seed=4).fit(X, y).predict_proba(X)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    # Fitting leaves the caller's random state alone.
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    cls(steps=2, hidden=8).fit(X, y)
    assert torch.equal(torch.rand(1), before)


@pytest.mark.parametrize("cls", HEADS)
def test_reproducible_with_two_threads_at_a_real_size(cls):
    # Large enough that torch splits the backward over threads (the attentive probe's
    # table lookup once had a gradient whose sums varied with the thread schedule).
    X, y = _series(64, seed=2, lengths=(20, 30))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runs = [cls(steps=15, seed=1).fit(X, y).predict_proba(X) for _ in range(3)]
    finally:
        torch.set_num_threads(threads)
    assert all(np.array_equal(runs[0], r) for r in runs[1:])


@pytest.mark.parametrize("cls", HEADS)
def test_learns_a_separable_task(cls):
    X, y = _series(40, seed=1)
    Xt, yt = _series(40, seed=2, lengths=(3, 30))        # other lengths at test time
    clf = cls(steps=60, hidden=16).fit(X, y)
    print(cls.__name__, "loss per epoch", [round(v, 3) for v in clf.loss_curve_[::5]],
          "test accuracy", clf.score(Xt, yt))
    assert clf.loss_curve_[-1] < 0.5 * clf.loss_curve_[0]
    assert clf.score(Xt, yt) == 1.0


@pytest.mark.parametrize("cls", HEADS)
def test_estimator_api(cls):
    clf = cls(hidden=8, steps=7, seed=2)
    params = clf.get_params()
    assert params["hidden"] == 8 and params["steps"] == 7 and params["seed"] == 2
    twin = clone(clf)
    assert twin.get_params() == params and not hasattr(twin, "net_")
    with pytest.raises(ValueError, match="fit"):
        clf.predict_proba([np.zeros((3, 2))])
    with pytest.raises(ValueError, match="X\\[1\\]"):
        clf.fit([np.zeros((3, 2)), np.zeros((0, 2))], [0, 1])
    with pytest.raises(ValueError, match="two classes"):
        clf.fit([np.zeros((3, 2)), np.ones((3, 2))], [0, 0])


def test_pool_time_averages_long_series_only():
    x = torch.arange(10.0)[:, None]
    assert torch.equal(pool_time(x, 16), x)
    pooled = pool_time(x, 4)                                  # windows of 3: 0-2, 3-5, 6-8, 9
    assert torch.allclose(pooled[:, 0], torch.tensor([1.0, 4.0, 7.0, 9.0]))
