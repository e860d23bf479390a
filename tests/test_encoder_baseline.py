"""The encoder's own baseline: argmax of the time-averaged logit columns."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dejavid.config.files import load_config
from dejavid.baselines.encoder import EncoderLogits, check_logit_columns, encoder_logits_for

EMBED = 6          # embedding columns before the logits
LABELS = np.array([10, 20, 30, 40])   # any label values; column j is the j-th in sorted order


def _videos(n: int, right: int, seed: int = 0):
    """``n`` videos [T, EMBED + C] whose time-mean logits favour the true class for the first
    ``right`` of them and a wrong class for the rest, while the LAST step always favours yet
    another wrong class (so a last-step classifier scores 0) and the embedding columns are
    large noise (so reading the wrong columns scores at chance)."""
    g = np.random.default_rng(seed)
    C = len(LABELS)
    X, y = [], []
    for v in range(n):
        true = v % C
        mean_class = true if v < right else (true + 1) % C
        last_class = (mean_class + 2) % C if (mean_class + 2) % C != true else (mean_class + 3) % C
        T = int(g.integers(4, 9))
        logits = g.uniform(-0.1, 0.1, size=(T, C))
        logits[:-1, mean_class] += 3.0                  # the steps before the last
        # Strong, yet the time-mean of last_class stays 2 / T >= 0.25 below mean_class's, more
        # than the noise (means within +-0.1) can close.
        logits[-1, last_class] += 3.0 * (T - 1) - 2.0
        embed = 100.0 * g.standard_normal((T, EMBED))
        X.append(np.concatenate([embed, logits], 1))
        y.append(LABELS[true])
    return X, np.array(y)


def test_accuracy_is_the_constructed_one_and_uses_the_time_mean():
    X, y = _videos(40, right=29)
    clf = EncoderLogits(logit_columns=len(LABELS)).fit(X, y)
    assert list(clf.classes_) == sorted(LABELS)
    assert clf.score(X, y) == pytest.approx(29 / 40)
    # The construction makes the last step wrong on every video: a last-step reader gets 0.
    last = LABELS[np.array([np.argmax(x[-1, -len(LABELS):]) for x in X])]
    assert np.mean(last == y) == 0.0
    np.testing.assert_allclose(clf.decision_function(X),
                               np.stack([x[:, -len(LABELS):].mean(0) for x in X]))
    assert clf.predict(X).dtype == LABELS.dtype


def test_top_k_and_input_forms():
    X, y = _videos(12, right=6, seed=1)
    clf = EncoderLogits(len(LABELS)).fit(X, y)
    assert clf.top_k_score(X, y, k=1) == clf.score(X, y) == 0.5
    assert clf.top_k_score(X, y, k=len(LABELS)) == 1.0
    # Tensors and an [N, T, F] array give the same answers as a list of arrays.
    same_T = [x[:4] for x in X]
    as_tensors = [torch.from_numpy(x).float() for x in same_T]
    np.testing.assert_array_equal(clf.predict(as_tensors), clf.predict(same_T))
    np.testing.assert_array_equal(clf.predict(np.stack(same_T)), clf.predict(same_T))


def test_ties_go_to_the_lower_class():
    x = np.zeros((3, 2 + 3))
    clf = EncoderLogits(3).fit([x, x, x], [0, 1, 2])
    assert list(clf.predict([x])) == [0]


def test_user_errors():
    X, y = _videos(8, right=8)
    with pytest.raises(ValueError, match="set logit_columns to 4"):
        EncoderLogits(51).fit(X, y)
    with pytest.raises(ValueError, match="set it to the number of classes"):
        EncoderLogits(0).fit(X, y)
    small = [x[:, -3:] for x in X]    # 3 features but 4 classes
    with pytest.raises(ValueError, match="exceeds the 3 features"):
        EncoderLogits(4).fit(small, y)
    with pytest.raises(ValueError, match="call fit"):
        EncoderLogits(4).predict(X)
    clf = EncoderLogits(4).fit(X, y)
    with pytest.raises(ValueError, match="features per step"):
        clf.predict([x[:, 1:] for x in X])
    with pytest.raises(ValueError, match="one label per series"):
        EncoderLogits(4).fit(X, y[:-1])


def test_config_key_checks():
    cfg = load_config(None, ["--logit_columns", "51", "--num_classes", "51", "--feature_size", "1459"])
    assert isinstance(encoder_logits_for(cfg, 51, 1459), EncoderLogits)
    assert encoder_logits_for(load_config(None), 51, 1459) is None
    with pytest.raises(ValueError, match="set logit_columns to 51"):
        load_config(None, ["--logit_columns", "50", "--num_classes", "51"])
    with pytest.raises(ValueError, match="exceeds feature_size"):
        load_config(None, ["--logit_columns", "51", "--feature_size", "40"])
    with pytest.raises(ValueError, match=">= 0"):
        load_config(None, ["--logit_columns", "-1"])
    # num_classes 0 (taken from the data): checked against the data instead.
    cfg = load_config(None, ["--logit_columns", "50"])
    with pytest.raises(ValueError, match="set logit_columns to 51"):
        encoder_logits_for(cfg, 51, 1459)
    check_logit_columns(51, 51, 51)   # features that are logits only are fine


def test_sklearn_clone():
    base = pytest.importorskip("sklearn.base")
    clf = EncoderLogits(7)
    twin = base.clone(clf)
    assert twin is not clf and twin.get_params() == {"logit_columns": 7}
