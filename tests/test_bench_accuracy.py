"""bench/bench_accuracy.py end to end in --quick mode (two small data sets, one seed)."""
from __future__ import annotations

import sys

import pytest

from conftest import ROOT

pytest.importorskip("aeon")
pytest.importorskip("sklearn")
sys.path.insert(0, str(ROOT / "bench"))
import bench_accuracy  # noqa: E402


def test_quick_mode_writes_the_table(tmp_path, capsys):
    out = tmp_path / "quick.md"
    assert bench_accuracy.main(["--quick", "--out", str(out), "--work", str(tmp_path / "w")]) == 0
    report = out.read_text()
    assert capsys.readouterr().out.strip() == report.strip()
    assert report.startswith("**Smoke run (--quick)**")     # labelled: not accuracies
    rows = {}
    for line in report.splitlines():   # the first table's rows (the per-seed table follows)
        name = line.split("|")[1].strip() if line.startswith("|") else ""
        if name in ("UnitTest", "ItalyPowerDemand"):
            rows.setdefault(name, line)
    assert set(rows) == {"UnitTest", "ItalyPowerDemand"}
    header = next(line for line in report.splitlines() if line.startswith("| data set | C"))
    for title in bench_accuracy.TITLES.values():
        assert title in header
    for name, line in rows.items():
        cells = [c.strip().strip("*") for c in line.split("|")[1:-1]]
        values = [float(c) for c in cells[6:6 + len(bench_accuracy.METHODS)]]
        assert all(0.0 <= v <= 100.0 for v in values), line
        assert cells[1] == "2" and cells[2] == "1" and cells[3] == "24"   # C, F, T
    # Official splits, nothing subsampled.
    assert "20/22" in rows["UnitTest"] and "67/1029" in rows["ItalyPowerDemand"]
    assert "seeds 0" in report and "DejaVid >= its DBA-centroid start on" in report


def test_unknown_dataset_is_an_error():
    with pytest.raises(ValueError, match="unknown data set"):
        bench_accuracy.main(["--datasets", "Nope"])


def test_one_nn_euclid_only_for_equal_lengths():
    import numpy as np
    a = [np.zeros((3, 1), np.float32), np.ones((3, 1), np.float32)]
    y = np.array([0, 1])
    assert bench_accuracy.knn_euclid(a, y, [np.full((3, 1), 0.9, np.float32)], np.array([1])) == 1.0
    assert bench_accuracy.knn_euclid(a, y, [np.zeros((4, 1), np.float32)], np.array([0])) is None
