"""DejaVidClassifier under the conditions a library meets: prediction from several threads,
fitting in a worker thread, the resume advice of a run folder, and parameters or data of
the wrong type (ValueErrors naming them, as scikit-learn's estimators give)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from dejavid import DejaVidClassifier

FAST = dict(num_timesteps=4, num_epochs=3, batch_size=8, sample_size_per_class=6,
            dba_max_iter=3, device="cpu")


@pytest.fixture(scope="module")
def two_classes():
    """40 series of 5-14 steps, 3 features; class 1 rises, class 0 falls (plus noise)."""
    g = np.random.default_rng(0)
    X, y = [], []
    for n in range(40):
        T = int(g.integers(5, 15))
        ramp = np.linspace(-1, 1, T)[:, None] * (1 if n % 2 else -1)
        X.append((ramp + 0.3 * g.normal(size=(T, 3))).astype(np.float32))
        y.append(n % 2)
    return X, np.array(y)


def test_decision_function_from_four_threads_matches_one_and_leaves_the_model_alone(two_classes):
    X, y = two_classes
    clf = DejaVidClassifier(tune="none", **FAST).fit(X, y)
    flag = clf.model_.fixed_path
    expected = clf.decision_function(X)
    results, errors = {}, []
    start = threading.Barrier(4)

    def work(i):
        try:
            start.wait()
            results[i] = [clf.decision_function(X) for _ in range(4)]
        except Exception as exc:   # noqa: BLE001  (reported below)
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    worst = max(float(np.abs(r - expected).max()) for rs in results.values() for r in rs)
    print("largest difference from the single-thread result", worst)
    assert worst == 0.0
    assert clf.model_.fixed_path is flag is False    # prediction aligns freely, set once at fit


def test_fit_in_a_worker_thread_with_a_run_folder(two_classes, tmp_path):
    X, y = two_classes
    out = {}

    def work():
        try:
            out["clf"] = DejaVidClassifier(tune="none", **FAST, run_dir=str(tmp_path / "run")).fit(X, y)
        except Exception as exc:   # noqa: BLE001  (asserted below)
            out["error"] = exc
    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert "error" not in out, out.get("error")
    assert (tmp_path / "run" / "last.pt").is_file()
    assert out["clf"].score(X, y) > 0.9


def test_the_printed_resume_advice_continues_the_run(two_classes, tmp_path, monkeypatch,
                                                     capsys):
    """A fit stopped mid-run (DEJAVID_STOP_AFTER_STEPS, as a Ctrl-C would) says how to
    continue; doing what it says ends with the weights of an uninterrupted fit."""
    X, y = two_classes
    whole = DejaVidClassifier(tune="none", **FAST, run_dir=str(tmp_path / "whole")).fit(X, y)
    monkeypatch.setenv("DEJAVID_STOP_AFTER_STEPS", "7")
    stopped = DejaVidClassifier(tune="none", **FAST, run_dir=str(tmp_path / "cut"), verbose=True)
    with pytest.raises(KeyboardInterrupt, match="resume=True"):
        stopped.fit(X, y)
    assert "resume=True" in capsys.readouterr().out
    monkeypatch.delenv("DEJAVID_STOP_AFTER_STEPS")
    resumed = stopped.set_params(resume=True, verbose=False).fit(X, y)
    assert len(resumed.history_) == FAST["num_epochs"]
    for name in ("mu", "theta"):
        np.testing.assert_array_equal(getattr(resumed.model_, name).detach().numpy(),
                                      getattr(whole.model_, name).detach().numpy())
    with pytest.raises(ValueError, match=r"other parameters \(lr=0.05, now 0.1\)"):
        DejaVidClassifier(tune="none", **FAST, lr=0.1, run_dir=str(tmp_path / "cut"), resume=True).fit(X, y)
    with pytest.raises(ValueError, match="resume=True needs run_dir"):
        DejaVidClassifier(tune="none", **FAST, resume=True).fit(X, y)


@pytest.mark.parametrize("params, message", [
    (dict(num_timesteps=4.5), r"num_timesteps must be a whole number >= 1 or 'auto', got 4.5"),
    (dict(lr="0.1"), r"lr must be a number, got '0.1'"),
    (dict(lr=float("nan")), "lr must be a finite number"),
    (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(num_epochs="many"), "num_epochs must be a whole number"),
    (dict(min_lr_ratio=2), r"min_lr_ratio must be in \[0, 1\]"),
    (dict(standardize="yes"), "standardize must be True or False"),
    (dict(logit_head="softmax"), "logit_head must be one of"),
    (dict(layout="tnf"), "layout must be one of"),
    (dict(device=0), "device must be"),
    (dict(seed=-1), "seed must be >= 0"),
])
def test_bad_parameters_are_value_errors_naming_them(two_classes, params, message):
    X, y = two_classes
    with pytest.raises(ValueError, match=message):
        DejaVidClassifier(tune="none", **{**FAST, **params}).fit(X, y)


def test_object_arrays_are_value_errors_naming_the_series():
    X = np.empty(2, dtype=object)
    X[0], X[1] = np.zeros((4, 2)), np.array([["a", "b"], ["c", "d"]])
    with pytest.raises(ValueError, match=r"X\[1\] holds values that are not numbers"):
        DejaVidClassifier(tune="none", **FAST).fit(X, [0, 1])
    with pytest.raises(ValueError, match="not numbers"):
        DejaVidClassifier(tune="none", **FAST).fit(np.array([[1, "x"], [2, "y"]], dtype=object), [0, 1])


LIBRARY_PROGRAM = """
import sys, threading
import numpy as np
import torch                                  # a user's program: torch first, no dejavid.runtime
import numba
from dejavid import DejaVidClassifier
g = np.random.default_rng(0)
X = [g.normal(size=(int(g.integers(5, 15)), 3)).astype(np.float32) + n % 2 for n in range(40)]
y = [n % 2 for n in range(40)]
clf = DejaVidClassifier(tune="none", num_timesteps=4, num_epochs=2, dba_max_iter=2, device="cpu").fit(X, y)
ref = clf.decision_function(X)
out = []
threads = [threading.Thread(target=lambda: out.append(clf.decision_function(X))) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
assert len(out) == 4 and all((o == ref).all() for o in out)
print("layer", numba.threading_layer())
"""


@pytest.mark.parametrize("env, layer", [({}, "workqueue"), ({"OMP_WAIT_POLICY": "PASSIVE"}, None),
                                        ({"NUMBA_THREADING_LAYER": "workqueue"}, "workqueue")])
def test_a_plain_program_gets_threads_that_do_not_spin(env, layer, tmp_path):
    """torch imported first, no dejavid.runtime: the estimator picks numba's workqueue layer
    (OpenMP's threads would spin) and serialises its kernels, so four predicting threads
    neither crash numba nor differ; where OpenMP is passive the default layer stays."""
    import os
    import subprocess
    import sys

    from conftest import ROOT
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER")}
    proc = subprocess.run([sys.executable, "-c", LIBRARY_PROGRAM], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = proc.stdout.split("layer ")[-1].strip()
    print("threading layer", got)
    if layer is None:
        assert got != "workqueue"
    else:
        assert got == layer


def test_numpy_scalars_are_valid_parameters(two_classes):
    """Grids built with numpy (np.arange, np.linspace) hand numpy scalars to set_params."""
    X, y = two_classes
    clf = DejaVidClassifier(tune="none", **{**FAST, "num_timesteps": np.int64(4), "num_epochs": np.int64(2),
                               "lr": np.float32(0.05), "standardize": np.bool_(True)}).fit(X, y)
    assert len(clf.history_) == 2 and clf.model_.mu.shape[1] == 4
