"""Settings chosen by cross-validation inside the training split (``tune: cv``,
``DejaVidClassifier(tune='cv')``, :mod:`dejavid.training.tune`).

- stratified folds: disjoint, covering, every class's share to within one, seeded;
- fewer folds than asked when a class is small; a class of one series is an error;
- a candidate changes exactly its keys (the epoch cap only lowers);
- choose_by_cv's fold scores (log-loss, top-1) are those of fitting each candidate on the
  other folds and evaluating on the held one; the lowest mean log-loss wins, the first
  on ties;
- the evaluation split never takes part: train_dejavid's choice (tune.json) is the same
  when every evaluation video and label is replaced, and the chosen values reach the
  checkpoint's config;
- the estimator: the new parameters are checked, survive clone, work in GridSearchCV, and
  tune='cv' records its choice in ``tune_``.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import ROOT
from dejavid.config.settings import (ALL_SERIES, CentroidSpec, LoopSpec, ModelSpec,
                                     TrainSettings, resampled_num_timesteps)
from dejavid.training import tune
from dejavid.training.engine import evaluate
from dejavid.training.run import fit


def _series(seed=0, per_class=8, C=3, F=2):
    """C classes of noisy ramps at class-specific levels, lengths 6-12."""
    g = np.random.default_rng(seed)
    X, y = [], []
    for c in range(C):
        for _ in range(per_class):
            T = int(g.integers(6, 13))
            ramp = np.linspace(-1, 1, T)[:, None] * (1 + c) * np.ones((1, F))
            X.append((ramp + 0.8 * c + 0.4 * g.standard_normal((T, F))).astype(np.float32))
            y.append(c)
    return X, np.array(y)


SMALL = TrainSettings(centroids=CentroidSpec(num_timesteps=5, dba_max_iter=3, backend="ref"),
                      model=ModelSpec(backend="ref"), loop=LoopSpec(num_epochs=2, batch_size=8))


def test_stratified_folds_cover_disjointly_with_each_class_shared():
    y = np.array([0] * 7 + [1] * 5 + [2] * 3 + [0] * 2)
    for k in (2, 3):
        folds = tune.stratified_folds(y, k, seed=4)
        assert len(folds) == k
        joined = np.sort(np.concatenate(folds))
        assert joined.tolist() == list(range(len(y)))
        for c in np.unique(y):
            shares = [int((y[f] == c).sum()) for f in folds]
            assert max(shares) - min(shares) <= 1, (c, shares)
    a = tune.stratified_folds(y, 3, seed=1)
    b = tune.stratified_folds(y, 3, seed=1)
    c = tune.stratified_folds(y, 3, seed=2)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


def test_fold_count_follows_the_smallest_class_and_refuses_a_lone_series():
    assert tune.fold_count(np.array([0, 0, 0, 1, 1, 1]), 3) == 3
    assert tune.fold_count(np.array([0, 0, 0, 1, 1]), 3) == 2
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have 1"):
        tune.fold_count(np.array([0, 0, 1]), 3)
    with pytest.raises(ValueError, match="tune_folds"):
        tune.fold_count(np.array([0, 0, 1, 1]), 1)


def test_candidate_settings_change_only_their_keys():
    base = SMALL.resolved([8] * 24)
    assert tune.candidate_settings(base, {}) == base
    c = tune.candidate_settings(base, tune.TUNE_GRID[2])
    assert c.centroids.step_pattern == c.model.step_pattern == "hvd"
    assert c.centroids.band == c.model.band == 0.1
    assert c.centroids.centroids_per_class == ALL_SERIES
    assert c.loop.num_epochs == 2                       # the cap (30) only lowers
    assert (c.optim, c.loop.batch_size, c.centroids.num_timesteps) == \
        (base.optim, base.loop.batch_size, base.centroids.num_timesteps)
    long = tune.candidate_settings(TrainSettings(loop=LoopSpec(num_epochs=80)).resolved([8] * 9),
                                   {"epochs_at_most": 30})
    assert long.loop.num_epochs == 30
    assert tune.config_changes(tune.TUNE_GRID[2], c) == {
        "use_mm": 1, "band": 0.1, "open_ends": False, "centroids_per_class": "all",
        "num_epochs": 2}
    with pytest.raises(ValueError, match="may set"):
        tune.candidate_settings(base, {"lr": 1.0})
    with pytest.raises(ValueError, match="resolve num_epochs"):
        tune.candidate_settings(TrainSettings(), {"epochs_at_most": 30})


def test_choose_by_cv_scores_are_fits_on_the_other_folds():
    X, y = _series()
    tensors = [torch.from_numpy(x) for x in X]
    settings = SMALL.resolved([len(x) for x in X])
    grid = ({}, {"step_pattern": "hvd", "band": 0.2})
    res = tune.choose_by_cv(tensors, y, [0, 1, 2], settings, True, folds=3, grid=grid,
                            seed=5, log=lambda *_: None)
    assert res.folds == 3 and len(res.scores) == 2 and all(len(s) == 3 for s in res.scores)
    assert res.fold_sizes == [8, 8, 8]
    # recompute candidate 1 on fold 2 independently
    held = tune.stratified_folds(y, 3, seed=5)[2]
    train_part, held_part = tune.fold_datasets(tensors, y, [0, 1, 2], held, True)
    assert set(train_part.rows.tolist()).isdisjoint(held_part.rows.tolist())
    # (the series' lengths differ: the candidate ran with open ends instead of its band)
    assert res.grid == ({}, {"step_pattern": "hvd", "open_ends": True, "centroid_init": "raw"})
    run = fit(train_part, None, tune.candidate_settings(settings, res.grid[1]), device="cpu",
              progress=False, log=lambda *_: None)
    again = evaluate(run.model, held_part, settings.loop, torch.device("cpu"), progress=False)
    assert res.scores[1][2] == again["top1"]
    assert res.losses[1][2] == pytest.approx(again["loss"], abs=0) and \
        len(res.losses[0]) == 3
    kept = evaluate(run.model, held_part, settings.loop, torch.device("cpu"), progress=False,
                    keep_logits=True)
    assert res.scaled_losses[1][2] == tune.scaled_log_loss(kept["logits"], kept["labels"])
    assert res.scaled_losses[1][2] <= res.losses[1][2] + 1e-12
    assert tune.TUNE_CRITERION == "log_loss_within_se"
    assert res.chosen_index == res.chosen_by("log_loss_within_se")
    assert res.chosen_by("log_loss") == int(np.argmin(res.mean_losses))
    # the per-series records are the folds' in order: held out once each
    n = sum(res.fold_sizes)
    assert all(len(v) == n for v in res.sample_losses + res.sample_hits)
    assert np.mean(res.sample_hits[1][-len(held):]) == pytest.approx(again["top1"])
    assert res.chosen_by("scaled_log_loss") == \
        int(np.argmin([np.mean(v) for v in res.scaled_losses]))
    assert res.chosen_by("top1") == int(np.argmax(res.means))
    assert res.briers[1][2] == tune.brier_score(kept["logits"], kept["labels"])
    assert res.chosen_by("brier") == int(np.argmin([np.mean(v) for v in res.briers]))
    with pytest.raises(ValueError, match="criterion"):
        res.chosen_by("f1")
    record = res.as_dict()
    assert [c["fold_scaled_log_loss"] for c in record["candidates"]] == \
        [[round(v, 6) for v in lo] for lo in res.scaled_losses]
    assert [c["fold_top1"] for c in record["candidates"]] == \
        [[round(v, 6) for v in s] for s in res.scores]
    assert [c["fold_log_loss"] for c in record["candidates"]] == \
        [[round(v, 6) for v in lo] for lo in res.losses]
    assert "<- chosen" in res.summary().splitlines()[1 + res.chosen_index]


def test_scaled_log_loss_is_the_minimum_over_the_logits_scale():
    """Against a dense grid of scales (an independent search), on three kinds of logits:
    random, separating (the loss falls to ~0 at the largest scale), and reversed."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (50,), generator=g)
    rand = torch.randn(50, 4, generator=g, dtype=torch.float64)
    sep = torch.nn.functional.one_hot(y, 4).double() + 0.1 * rand
    rev = -sep
    ce = torch.nn.functional.cross_entropy
    for z in (rand, sep, rev):
        grid = min(float(ce(z * np.exp(u), y)) for u in np.linspace(-10, 10, 20001))
        got = tune.scaled_log_loss(z, y)
        assert got <= grid + 1e-9 and got >= grid - 1e-3, (got, grid)
        assert got <= float(ce(z, y)) + 1e-12
    assert tune.scaled_log_loss(sep, y) < 1e-3                 # separable: ~0
    assert abs(tune.scaled_log_loss(rev, y) - np.log(4)) < 1e-3  # no better than uniform


def _result(hits, losses):
    G = len(hits)
    return tune.TuneResult(grid=tuple({"i": g} for g in range(G)), folds=2,
                           scores=[[np.mean(h)] for h in hits], chosen_index=0, seconds=0.0,
                           losses=[[np.mean(v)] for v in losses],
                           sample_hits=[list(map(float, h)) for h in hits],
                           sample_losses=[list(map(float, v)) for v in losses])


def test_criterion_takes_the_lowest_log_loss_within_one_se_of_the_best_top1():
    """Hand-worked: 10 series.  Candidate 1 is best by top-1 (8/10); candidate 0 misses
    two more (6/10): differences d = [1, 1, 0 x 8], mean 0.2, std 0.4216, SE 0.1333 ->
    out.  Candidate 2 misses one more (7/10): mean 0.1, SE 0.1 -> in, and its log-loss is
    the lowest, so it wins although the plain log-loss would pick candidate 0."""
    h1 = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    h0 = [0, 0, 1, 1, 1, 1, 1, 1, 0, 0]
    h2 = [0, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    res = _result([h0, h1, h2], [[0.1] * 10, [0.9] * 10, [0.5] * 10])
    assert res.admissible() == [1, 2]
    assert res.chosen_by("log_loss_within_se") == 2
    assert res.chosen_by("log_loss") == 0 and res.chosen_by("top1") == 1
    # the one-standard-error rule of the simplest (recorded, not in use): the first within
    assert res.chosen_by("simplest_within_se") == 1
    with pytest.raises(ValueError, match="simplest_within_se"):
        res.chosen_by("accuracy")
    # all equal: every candidate within, the lowest log-loss; ties to the first
    same = _result([h1, h1], [[0.3] * 10, [0.3] * 10])
    assert same.admissible() == [0, 1] and same.chosen_by("log_loss_within_se") == 0
    assert same.chosen_by("simplest_within_se") == 0


def test_variable_lengths_swap_the_band_for_open_ends():
    grid = tune.TUNE_GRID
    assert tune.for_lengths(grid, [24] * 9) == grid
    varied = tune.for_lengths(grid, [24, 30, 24])
    assert len(varied) == len(grid)
    assert all("band" not in c for c in varied)
    for c, v in zip(grid, varied):
        plain = {k: x for k, x in c.items() if k != "band"}
        if "band" not in c:
            assert v == c
        elif c.get("resample_inputs"):   # every series K steps long: only the band goes
            assert v == plain
        else:   # open ends instead, centroids averaged at the series' own scale
            assert v == plain | {"open_ends": True, "centroid_init": "raw"}
    assert [c.get("open_ends") for c in varied] == [None, True, True, None]
    # candidates that differ only in their band become one
    assert tune.for_lengths(({}, {"band": 0.1}, {"band": 0.2}, {"step_pattern": "hvd"}),
                            [3, 4]) == ({}, {"open_ends": True, "centroid_init": "raw"},
                                        {"step_pattern": "hvd"})
    X, y = _series()                       # lengths 6-12
    res = tune.choose_by_cv([torch.from_numpy(x) for x in X], y, [0, 1, 2],
                            SMALL.resolved([len(x) for x in X]), True, folds=2,
                            log=lambda *_: None)
    assert all("band" not in c for c in res.grid)
    assert [c for c in res.grid if c.get("open_ends")]


def test_open_ends_and_band_candidates_replace_each_other():
    banded = replace(SMALL, model=replace(SMALL.model, band=0.1),
                     centroids=replace(SMALL.centroids, band=0.1))
    s = tune.candidate_settings(banded, {"open_ends": True})
    assert (s.model.open_ends, s.centroids.open_ends, s.model.band, s.centroids.band) == \
        (True, True, None, None)
    assert tune.config_changes({"open_ends": True}, s) == {"open_ends": True, "band": "none"}
    opened = replace(SMALL, model=replace(SMALL.model, open_ends=True),
                     centroids=replace(SMALL.centroids, open_ends=True))
    s = tune.candidate_settings(opened, {"step_pattern": "hvd", "band": 0.1})
    assert (s.model.open_ends, s.centroids.open_ends, s.model.band) == (False, False, 0.1)
    assert tune.config_changes({"band": 0.1}, s) == {"band": 0.1, "open_ends": False}
    s = tune.candidate_settings(SMALL, {"open_ends": True, "centroid_init": "raw"})
    assert s.centroids.init == "raw" and s.model.open_ends
    assert tune.config_changes({"open_ends": True, "centroid_init": "raw"}, s) == \
        {"open_ends": True, "band": "none", "centroid_init": "raw"}


def test_brier_score_by_hand():
    y = torch.tensor([0, 1])
    # softmax([0, 0]) = (1/2, 1/2): (1/2)^2 + (1/2)^2 per sample
    assert tune.brier_score(torch.zeros(2, 2), y) == pytest.approx(0.5, abs=1e-15)
    # a sure right answer costs 0, a sure wrong one 2
    sure = torch.tensor([[60.0, 0.0], [60.0, 0.0]])
    assert tune.brier_score(sure, y) == pytest.approx(1.0, abs=1e-12)   # (0 + 2) / 2
    p = torch.softmax(torch.tensor([[1.0, 2.0, 0.5]]).double(), 1)[0]
    want = float((p[0] - 1) ** 2 + p[1] ** 2 + p[2] ** 2)
    assert tune.brier_score(torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([0])) == \
        pytest.approx(want, rel=1e-12)


def test_ties_go_to_the_earlier_candidate():
    X, y = _series()
    tensors = [torch.from_numpy(x) for x in X]
    settings = SMALL.resolved([len(x) for x in X])
    # the same candidate twice: equal scores, the first wins
    res = tune.choose_by_cv(tensors, y, [0, 1, 2], settings, False, folds=2,
                            grid=({}, {}), log=lambda *_: None)
    assert res.scores[0] == res.scores[1] and res.losses[0] == res.losses[1]
    assert res.chosen_index == 0


def _write(root, X, y, split_of):
    (root / "f").mkdir(parents=True, exist_ok=True)
    splits, labels, fnames = {}, {}, {}
    for n, (x, lab, s) in enumerate(zip(X, y, split_of)):
        vid = f"v{n:03d}"
        torch.save(torch.from_numpy(x), root / "f" / f"{vid}.pt")
        splits[vid], labels[vid], fnames[vid] = s, int(lab), f"f/{vid}.pt"
    for name, m in (("id2splits", splits), ("id2labels", labels), ("id2fname", fnames)):
        with open(root / f"{name}.pkl", "wb") as fh:
            pickle.dump(m, fh)
    return [f"--id2feats", str(root), "--id2splits", str(root / "id2splits.pkl"),
            "--id2labels", str(root / "id2labels.pkl"), "--id2fname", str(root / "id2fname.pkl")]


def test_train_dejavid_chooses_without_reading_the_evaluation_split(tmp_path):
    """The choice (tune.json: every fold score) is the same when every evaluation video
    and label is replaced; the chosen values are what the run trained and recorded."""
    import train_dejavid
    X, y = _series(per_class=6)
    Xe, ye = _series(seed=1, per_class=4)
    other = [np.random.default_rng(n).normal(50, 9, size=(int(3 + n % 20), 2)).astype(np.float32)
             for n in range(len(Xe))]
    records = []
    for name, (ev, yv) in (("a", (Xe, ye)), ("b", (other, (ye + 1) % 3))):
        data = _write(tmp_path / name, X + list(ev), list(y) + list(yv),
                      ["train"] * len(X) + ["val"] * len(ev))
        rc = train_dejavid.main([*data, "--num_timesteps", "5", "--dba_max_iter", "3",
                                 "--num_epochs", "2", "--batch_size", "8", "--tune", "cv",
                                 "--tune_folds", "2", "--device", "cpu",
                                 "--cache_dir", str(tmp_path / name / "cache"),
                                 "--output_dir", str(tmp_path / name / "runs"),
                                 "--run_name", "t", "--no-progress"])
        assert rc == 0
        run = tmp_path / name / "runs" / "t"
        record = json.loads((run / train_dejavid.TUNE_FILE).read_text())
        ckpt = torch.load(run / "last.pt", weights_only=False)
        records.append((record, ckpt))
    (ra, ca), (rb, cb) = records
    assert ra == {**rb, "seconds": ra["seconds"]}
    assert len(ra["candidates"]) == len(tune.TUNE_GRID) and ra["folds"] == 2
    for key, value in ra["chosen_changes"].items():
        if key == "step_pattern":
            key, value = "use_mm", 1 if value == "hvd" else 0
        elif key == "epochs_at_most":
            key, value = "num_epochs", min(2, value)
        assert ca["config"][key] == value
    assert ca["config"]["tune"] == "cv"
    if ra["chosen_changes"].get("resample_inputs"):
        assert ca["config"]["num_timesteps"] == ca["model"]["mu"].shape[-2]
    # the same training (the choice and the training split are the same): the same model
    assert torch.equal(ca["model"]["theta"], cb["model"]["theta"])


def test_estimator_parameters_are_checked_and_survive_clone():
    from sklearn.base import clone
    from dejavid import DejaVidClassifier
    X, y = _series(per_class=4)
    for bad in ({"band": -0.1}, {"band": "wide"}, {"centroids_per_class": 0},
                {"centroids_per_class": "most"}, {"centroid_init": "mean"},
                {"tune": "grid"}, {"tune_folds": 1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            DejaVidClassifier(**bad, num_epochs=1).fit(X, y)
    clf = DejaVidClassifier(band=0.2, centroids_per_class="all", centroid_init="raw",
                            tune="cv", tune_folds=2)
    params = clone(clf).get_params()
    assert {k: params[k] for k in ("band", "centroids_per_class", "centroid_init", "tune",
                                   "tune_folds")} == \
        {"band": 0.2, "centroids_per_class": "all", "centroid_init": "raw", "tune": "cv",
         "tune_folds": 2}
    s = DejaVidClassifier(band=0.2, centroids_per_class=3, step_pattern="hvd")._settings()
    assert (s.model.band, s.centroids.band, s.centroids.centroids_per_class) == (0.2, 0.2, 3)


def test_estimator_grid_search_over_the_new_parameters():
    from sklearn.model_selection import GridSearchCV
    from dejavid import DejaVidClassifier
    X, y = _series(per_class=6)
    base = DejaVidClassifier(num_timesteps=5, num_epochs=2, dba_max_iter=3, backend="ref",
                             device="cpu", tune="none")
    search = GridSearchCV(base, {"band": [None, 0.2], "centroids_per_class": [1, "all"]},
                          cv=2).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_["band"] in (None, 0.2)
    assert 0.0 <= search.best_score_ <= 1.0
    fitted = search.best_estimator_
    M = fitted.centroids_per_class
    P = fitted.model_.mu.shape[0]
    assert P == (3 if M == 1 else len(X))


def test_estimator_tune_cv_records_and_trains_the_choice(tmp_path):
    from dejavid import DejaVidClassifier
    X, y = _series(per_class=6)
    clf = DejaVidClassifier(num_timesteps=5, num_epochs=2, dba_max_iter=3, backend="ref",
                            device="cpu", tune="cv", tune_folds=2,
                            run_dir=str(tmp_path / "run")).fit(X, y)
    res = clf.tune_
    assert res.folds == 2 and len(res.scores) == len(tune.TUNE_GRID)
    chosen = res.chosen
    model = clf.model_
    assert model.step_pattern == chosen.get("step_pattern", "hv")
    assert model.band == chosen.get("band")
    assert (model.mu.shape[0] == len(X)) == (chosen.get("centroids_per_class") == ALL_SERIES)
    # a resampling choice trains sqrt(K * median) steps (median 9 or 10 > K = 5: 7)
    K = resampled_num_timesteps(5, [len(x) for x in X]) if chosen.get("resample_inputs") else 5
    assert resampled_num_timesteps(5, [len(x) for x in X]) == 7
    assert model.mu.shape[-2] == K
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert ckpt["config"]["tune_choice"] == chosen
    # the user's parameters are not changed by the choice (scikit-learn's rule)
    assert clf.get_params()["band"] is None and clf.get_params()["step_pattern"] == "hv"


def test_a_class_of_one_series_skips_the_choice_with_a_warning(tmp_path, capsys):
    from dejavid import DejaVidClassifier
    import train_dejavid
    X, y = _series(per_class=4)
    X, y = X[:9], y[:9]                  # class 2 keeps one series
    assert tune.cannot_tune(y, 3) is not None and tune.cannot_tune(y[:8], 3) is None
    with pytest.warns(UserWarning, match=r"tune='cv' skipped .*\[2\] have 1"):
        clf = DejaVidClassifier(num_timesteps=5, num_epochs=1, dba_max_iter=2, backend="ref",
                                device="cpu", tune="cv").fit(X, y)
    assert clf.tune_ is None and clf.model_.step_pattern == "hv"
    data = _write(tmp_path, X + X[:3], list(y) + list(y[:3]), ["train"] * 9 + ["val"] * 3)
    assert train_dejavid.main([*data, "--num_timesteps", "5", "--dba_max_iter", "2",
                               "--num_epochs", "1", "--tune", "cv", "--device", "cpu",
                               "--cache_dir", str(tmp_path / "cache"), "--output_dir",
                               str(tmp_path / "runs"), "--run_name", "t", "--no-progress"]) == 0
    assert "tune: cv skipped" in capsys.readouterr().out
    assert not (tmp_path / "runs" / "t" / train_dejavid.TUNE_FILE).exists()


def test_large_training_splits_choose_on_a_stratified_subset(monkeypatch):
    y = np.array([0] * 50 + [1] * 30 + [2] * 3 + [3] * 1)
    sub = tune.choice_subset(y, seed=0, limit=20)
    assert len(sub) < len(y) and np.array_equal(sub, np.sort(sub))
    counts = {c: int((y[sub] == c).sum()) for c in range(4)}
    assert counts[0] == 12 and counts[1] == 7            # their share of 20 / 84
    assert counts[2] == 2 and counts[3] == 1             # at least 2, or all a class has
    assert np.array_equal(sub, tune.choice_subset(y, seed=0, limit=20))
    assert np.array_equal(tune.choice_subset(y, seed=0, limit=100), np.arange(len(y)))
    # through choose_by_cv: the folds cover the subset only
    X, labels = _series(per_class=8)
    monkeypatch.setattr(tune, "TUNE_MAX_VIDEOS", 12)
    res = tune.choose_by_cv([torch.from_numpy(x) for x in X], labels, [0, 1, 2],
                            SMALL.resolved([len(x) for x in X]), True, folds=2,
                            grid=({},), log=lambda *_: None)
    assert res.videos == 12 and sum(res.fold_sizes) == 12


def test_every_series_candidate_is_left_out_above_the_prototype_bound(monkeypatch):
    labels = np.array([0] * 70 + [1] * 20)
    settings = SMALL.resolved([8] * 90)                  # sample_size_per_class 50
    assert tune.prototype_count(labels, 50) == 70
    grid, skipped = tune.affordable(tune.TUNE_GRID, labels, settings, limit=69)
    every = [g for g in tune.TUNE_GRID if g.get("centroids_per_class") == ALL_SERIES]
    assert grid == tune.TUNE_GRID[:2] and len(skipped) == len(every) == 2
    assert all("70 prototypes > 69" in s for s in skipped)
    assert tune.affordable(tune.TUNE_GRID, labels, settings, limit=70) == (tune.TUNE_GRID, [])
    X, y = _series(per_class=4)
    monkeypatch.setattr(tune, "TUNE_MAX_PROTOTYPES", 5)
    res = tune.choose_by_cv([torch.from_numpy(x) for x in X], y, [0, 1, 2],
                            SMALL.resolved([len(x) for x in X]), True, folds=2,
                            log=lambda *_: None)
    assert len(res.grid) == 2 and res.skipped and "left out" in res.summary()
    assert res.as_dict()["skipped"] == res.skipped


def test_resampling_candidate_trains_the_longer_k_in_folds_and_at_the_end():
    # K = 5 against series of 6-12 steps: the candidate that resamples trains
    # round(sqrt(5 * median)) steps, from each fold's own training lengths and then from
    # the whole split's; the config records it
    X, y = _series(per_class=6)
    tensors = [torch.from_numpy(x) for x in X]
    settings = SMALL.resolved([len(x) for x in X])
    cand = {"resample_inputs": True}
    res = tune.choose_by_cv(tensors, y, [0, 1, 2], settings, True, folds=2, grid=({}, cand),
                            seed=1, log=lambda *_: None)
    held = tune.stratified_folds(y, 2, seed=1)[0]
    train_part, held_part = tune.fold_datasets(tensors, y, [0, 1, 2], held, True)
    lengths = train_part.index.lengths[train_part.rows]
    fold_settings = tune.candidate_settings(settings, cand, lengths)
    assert fold_settings.centroids.num_timesteps == resampled_num_timesteps(5, lengths) > 5
    run = fit(train_part, None, fold_settings, device="cpu", progress=False,
              log=lambda *_: None)
    assert run.model.mu.shape[-2] == fold_settings.centroids.num_timesteps
    again = evaluate(run.model, held_part, settings.loop, torch.device("cpu"), progress=False)
    assert res.scores[1][0] == again["top1"]
    final = tune.candidate_settings(settings, cand, [len(x) for x in X])
    assert tune.config_changes(cand, final)["num_timesteps"] == \
        resampled_num_timesteps(5, [len(x) for x in X]) == 7


def test_train_dejavid_reads_the_training_split_once_when_tuning(tmp_path, monkeypatch):
    # the split the choice read is the split training uses (no device store): each split
    # is opened once
    import train_dejavid
    opened = []

    class Counting(train_dejavid.TSEDataset):
        def __init__(self, index, split, *args, **kwargs):
            opened.append(split)
            super().__init__(index, split, *args, **kwargs)

    monkeypatch.setattr(train_dejavid, "TSEDataset", Counting)
    X, y = _series(per_class=4)
    data = _write(tmp_path / "d", X, list(y), ["val" if n % 4 == 3 else "train" for n in range(12)])
    rc = train_dejavid.main([*data, "--num_timesteps", "5", "--dba_max_iter", "2",
                             "--num_epochs", "1", "--batch_size", "8", "--tune", "cv",
                             "--tune_folds", "2", "--device", "cpu",
                             "--cache_dir", str(tmp_path / "cache"),
                             "--output_dir", str(tmp_path / "runs"), "--run_name", "t",
                             "--no-progress"])
    assert rc == 0
    assert (tmp_path / "runs" / "t" / train_dejavid.TUNE_FILE).exists()   # it chose
    assert sorted(opened) == ["train", "val"]
