"""The estimators read aeon/sktime's (n_cases, n_channels, n_timepoints) through
``layout='nct'`` exactly as the transposed [N, T, F] input; a transposed-looking X is a
warning or an error naming the parameter; a 2-D X is N univariate series."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from dejavid.estimators import DejaVidClassifier, KNeighborsDTW

FAST = dict(num_timesteps=8, num_epochs=3, batch_size=16, sample_size_per_class=5,
            dba_max_iter=3, device="cpu")


@pytest.fixture(scope="module")
def basic_motions():
    """aeon's bundled BasicMotions: 40 + 40 cases, 6 channels, 100 time points, 4 classes."""
    pytest.importorskip("aeon")
    from aeon.datasets import load_basic_motions
    Xtr, ytr = load_basic_motions(split="train")
    Xte, yte = load_basic_motions(split="test")
    return Xtr.astype(np.float32), ytr, Xte.astype(np.float32), yte


def test_aeon_layout_gives_the_same_classifier_as_the_transposed_input(basic_motions):
    Xtr, ytr, Xte, yte = basic_motions
    assert Xtr.shape == (40, 6, 100)
    aeon = DejaVidClassifier(tune="none", **FAST, layout="nct").fit(Xtr, ytr)
    ntf = DejaVidClassifier(tune="none", **FAST, layout="ntf").fit(Xtr.transpose(0, 2, 1), ytr)
    assert aeon.n_features_in_ == ntf.n_features_in_ == 6
    np.testing.assert_array_equal(aeon.decision_function(Xte),
                                  ntf.decision_function(Xte.transpose(0, 2, 1)))
    accuracy = aeon.score(Xte, yte)
    print("BasicMotions test accuracy, layout='nct'", accuracy)
    assert accuracy == ntf.score(Xte.transpose(0, 2, 1), yte) and accuracy > 0.5   # chance 0.25
    knn = KNeighborsDTW(layout="nct").fit(Xtr, ytr)
    assert knn.score(Xte, yte) == KNeighborsDTW().fit(Xtr.transpose(0, 2, 1), ytr).score(
        Xte.transpose(0, 2, 1), yte)


def test_aeon_arrays_without_layout_warn_naming_the_parameter(basic_motions):
    Xtr, ytr, _, _ = basic_motions
    with pytest.warns(UserWarning, match=r"pass layout='nct'") as record:
        clf = DejaVidClassifier(tune="none", **FAST).fit(Xtr, ytr)
    assert clf.n_features_in_ == 100 and len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # an explicit layout says the data are meant so
        DejaVidClassifier(tune="none", **FAST, layout="ntf").fit(Xtr[::4], ytr[::4])


def test_ragged_aeon_lists_fail_naming_the_parameter(basic_motions):
    Xtr, ytr, _, _ = basic_motions
    ragged = [x[:, :60 + n] for n, x in enumerate(Xtr)]        # (6, T_n), T_n differ
    with pytest.raises(ValueError, match=r"X\[1\] has 61 features but X\[0\] has 60.*"
                                         r"pass layout='nct'"):
        DejaVidClassifier(tune="none", **FAST).fit(ragged, ytr)
    clf = DejaVidClassifier(tune="none", **FAST, layout="nct").fit(ragged, ytr)
    assert clf.n_features_in_ == 6
    with pytest.raises(ValueError, match="pass layout='ntf'"):
        DejaVidClassifier(tune="none", **FAST, layout="nct").fit([r.T for r in ragged], ytr)


def test_a_2d_array_is_n_univariate_series():
    g = np.random.default_rng(0)
    X = np.stack([np.sin(np.linspace(0, 3, 20) * (1 + n % 2)) + 0.1 * g.normal(size=20)
                  for n in range(16)]).astype(np.float32)        # [N, T]
    y = np.arange(16) % 2
    for layout in (None, "ntf", "nct"):
        clf = DejaVidClassifier(tune="none", **{**FAST, "num_timesteps": 4}, layout=layout).fit(X, y)
        assert clf.n_features_in_ == 1
        assert clf.predict(X[:, :15]).shape == (16,)               # other lengths are fine
