"""bench/bench_accuracy.py end to end in --quick mode (two small data sets, one seed)."""
from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from conftest import ROOT

pytest.importorskip("aeon")
pytest.importorskip("sklearn")
sys.path.insert(0, str(ROOT / "bench"))
import bench_accuracy  # noqa: E402
from dejavid.training.checkpoint import load_checkpoint  # noqa: E402


def _table_rows(report: str, names) -> tuple[dict, dict]:
    """(first table's cells, per-seed table's cells) per data set, as printed."""
    first, per_seed = {}, {}
    for line in report.splitlines():
        name = line.split("|")[1].strip() if line.startswith("|") else ""
        if name in names:
            (per_seed if name in first else first)[name] = [c.strip() for c in
                                                            line.split("|")[1:-1]]
    return first, per_seed


def test_quick_mode_writes_the_table(tmp_path, capsys):
    out = tmp_path / "quick.md"
    assert bench_accuracy.main(["--quick", "--out", str(out), "--work", str(tmp_path / "w")]) == 0
    report = out.read_text()
    assert capsys.readouterr().out.strip() == report.strip()
    assert report.startswith("**Smoke run (--quick)**")     # labelled: not accuracies
    methods = bench_accuracy.METHODS
    rows, per_seed = _table_rows(report, ("UnitTest", "ItalyPowerDemand"))
    assert set(rows) == set(per_seed) == {"UnitTest", "ItalyPowerDemand"}
    header = next(line for line in report.splitlines() if line.startswith("| data set | C"))
    for title in bench_accuracy.TITLES.values():
        assert title in header
    assert "DejaVid s/run (centroids computed / cached)" in header
    shown = {}
    for name, cells in rows.items():
        assert cells[1] == "2" and cells[2] == "1" and cells[3] == "24"   # C, F, T
        top1 = cells[6:6 + len(methods)]
        values = [None if c == "n/a" else float(c.strip("*")) for c in top1]
        assert all(0.0 <= v <= 100.0 for v in values if v is not None), cells
        shown[name] = dict(zip(methods, values))
        # bold marks exactly the best value shown
        best = max(v for v in values if v is not None)
        assert [c.startswith("**") for c in top1] == [v == best for v in values], cells
        # one seed: its run computed the centroids; no run loaded them
        assert re.fullmatch(r"\d+\.\d / -", cells[-1]), cells
        # the means are those of the per-seed table
        for m, seed_cell in zip(("dejavid", "dejavid_tuned", "gru", "attention"),
                                per_seed[name][1:5]):
            assert shown[name][m] == pytest.approx(
                np.mean([float(v) for v in seed_cell.split(" / ")]), abs=0.005)
    # Official splits, nothing subsampled.
    assert "20/22" in rows["UnitTest"] and "67/1029" in rows["ItalyPowerDemand"]
    assert "seeds 0" in report
    # The summary sentence is the one the printed table gives.
    sentence = bench_accuracy.summary(shown)
    assert sentence.startswith("DejaVid >= its DBA-centroid start on")
    assert report.rstrip().splitlines()[-1] == sentence


def test_summary_reads_the_shown_values():
    """A difference the table rounds away is no difference for the sentence; ties count
    as '>='; the learned heads count only when strictly above."""
    results = {"A": {"top1": {**{m: [0.5] for m in bench_accuracy.METHODS},
                              "dejavid": [0.70001, 0.70001], "dba_centroid": [0.70004],
                              "knn_dtw": [0.8], "gru": [0.7, 0.70008], "knn_euclid": []}},
               "B": {"top1": {**{m: [0.5] for m in bench_accuracy.METHODS},
                              "dejavid": [0.9], "knn_dtw_diag": [0.95], "attention": [0.91]}}}
    shown = bench_accuracy.shown_top1(results)
    assert shown["A"]["dejavid"] == shown["A"]["dba_centroid"] == 70.0
    assert shown["A"]["knn_euclid"] is None and shown["B"]["attention"] == 91.0
    assert bench_accuracy.summary(shown) == (
        "DejaVid >= its DBA-centroid start on 2/2 (A, B); >= the best of 1-NN DTW, DBA "
        "centroid and mean pool + LR on 1/2 (B); >= 1-NN DTW with diagonal steps on 1/2 (A). "
        "Learned temporal heads above DejaVid: attn. probe on B. DejaVid (tuned) >= every "
        "other column on 0/2 (none); >= 1-NN DTW with diagonal steps on 1/2 (A).")
    shown["B"]["gru"] = None
    assert bench_accuracy.summary(shown) == "(summary needs every method)"


def test_dejavid_runs_are_timed_by_whether_they_computed_the_centroids(tmp_path):
    r = bench_accuracy.bench_dataset("UnitTest", [0, 1, 2], tmp_path, True, lambda *a: None,
                                     methods=("dejavid",))
    assert [computed for _, computed in r["dejavid_runs"]] == [True, False, False]
    total = sum(seconds for seconds, _ in r["dejavid_runs"])
    assert r["seconds"]["dejavid"] == pytest.approx(total)
    first, later = (float(v) for v in bench_accuracy._run_times(r["dejavid_runs"]).split(" / "))
    assert first == pytest.approx(r["dejavid_runs"][0][0], abs=0.05)
    assert later == pytest.approx(np.mean([s for s, _ in r["dejavid_runs"][1:]]), abs=0.05)
    assert bench_accuracy._run_times([(3.0, False)]) == "- / 3.0"


def test_unknown_dataset_is_an_error():
    with pytest.raises(ValueError, match="unknown data set"):
        bench_accuracy.main(["--datasets", "Nope"])


def test_one_nn_euclid_only_for_equal_lengths():
    import numpy as np
    a = [np.zeros((3, 1), np.float32), np.ones((3, 1), np.float32)]
    y = np.array([0, 1])
    assert bench_accuracy.knn_euclid(a, y, [np.full((3, 1), 0.9, np.float32)], np.array([1])) == 1.0
    assert bench_accuracy.knn_euclid(a, y, [np.zeros((4, 1), np.float32)], np.array([0])) is None


def _written_series(data_args):
    """{split: list of series bytes} of a data set written by write_on_disk."""
    import torch
    folder = data_args[data_args.index("--id2feats") + 1]
    out = {}
    for split in ("train", "test"):
        blob = torch.load(f"{folder}/{split}.pt", weights_only=True)
        out[split] = [blob[k].numpy().tobytes() for k in sorted(blob)]
    return out


def test_tuned_column_is_train_dejavid_with_tune_cv(tmp_path):
    """The column runs the package's tune: cv (its no-peeking test: tests/test_tune.py) and
    reports the run's tune.json."""
    import numpy as np
    g = np.random.default_rng(0)
    Xtr = [(g.standard_normal((int(g.integers(4, 9)), 1)) + n % 3).astype(np.float32)
           for n in range(12)]
    ytr = np.array([0, 1, 2] * 4)
    Xte, yte = Xtr[:6], ytr[:6]
    (tmp_path / "data").mkdir()
    data_args = bench_accuracy.write_on_disk(tmp_path / "data", Xtr, ytr, Xte, yte)
    r = bench_accuracy.run_dejavid_tuned(data_args, tmp_path / "w", 0,
                                         bench_accuracy.QUICK_DEJAVID, quick=True)
    from dejavid.training.tune import TUNE_GRID, describe, for_lengths
    grid = for_lengths(TUNE_GRID, [len(x) for x in Xtr])   # lengths 4-8: without the band
    assert r["cv"]["folds"] == 2 and len(r["cv"]["candidates"]) == len(grid)
    assert r["chosen"] in [describe(c) for c in grid]
    assert [c["changes"] for c in r["cv"]["candidates"]] == [describe(c) for c in grid]
    assert 0.0 <= r["top1"] <= 1.0
    ckpt = load_checkpoint(tmp_path / "w" / "runs" / "seed0-tuned")
    assert ckpt["config"]["tune"] == "cv" and ckpt["config"]["tune_folds"] == 2


def test_variable_length_rules_are_seeded_and_keep_the_signal():
    import numpy as np
    X = [np.arange(20, dtype=np.float32).reshape(20, 1) + n for n in range(30)]
    crop = bench_accuracy.vary_lengths(X, "crop", seed=0)
    assert crop[0].tobytes() == bench_accuracy.vary_lengths(X, "crop", seed=0)[0].tobytes()
    lengths = [c.shape[0] for c in crop]
    assert min(lengths) >= 4 and max(lengths) <= 20 and len(set(lengths)) > 3
    for x, c in zip(X, crop):   # a contiguous window of the series
        start = int(c[0, 0] - x[0, 0])
        assert np.array_equal(c, x[start:start + c.shape[0]])
    tile = bench_accuracy.vary_lengths(X, "tile", seed=0)
    assert {t.shape[0] // 20 for t in tile} <= {1, 2, 3, 4} and len({t.shape[0] for t in tile}) > 1
    for x, t in zip(X, tile):
        assert np.array_equal(t, np.tile(x, (t.shape[0] // 20, 1)))
    with pytest.raises(ValueError, match="crop or tile"):
        bench_accuracy.vary_lengths(X, "stretch", seed=0)
