"""reproduce.py end to end on a tiny dataset: all rows (both single-part DejaVid variants
included), numbers equal to the runs', reuse without retraining, resume of a stopped run,
plots, opt-in stage timing, errors.  The paper's rows and numbers: test_paper_table.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import reproduce
from conftest import ROOT
from dejavid.training import run as train_mod
from dejavid.training.checkpoint import load_checkpoint
from dejavid.report.table import METHODS, TITLES, TRAINED
from dejavid.training.timing import NULL_TIMER, StageTimer

from helpers import ramp_videos, write_config_yaml, write_dataset

PLOTS = ("learning_curves.png", "weights_per_class.png", "weights_mean.png", "alignment_path.png")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """Config of a dataset that only temporal order separates (rising vs falling ramps)."""
    pytest.importorskip("sklearn")
    tmp = tmp_path_factory.mktemp("repro")
    paths = write_dataset(tmp / "data", ramp_videos(10))
    return write_config_yaml(tmp / "tiny.yaml", paths, name="tiny", num_timesteps=4,
                             num_epochs=3, batch_size=8, lr=0.05, w_one_init=True,
                             sample_size_per_class=10, dba_max_iter=5, in_memory=True)


@pytest.fixture(scope="module")
def first_run(tiny):
    """One full reproduce run; returns its folder."""
    assert reproduce.main(["--config", str(tiny), "--no-progress"]) == 0
    return tiny.parent / "data" / "runs" / "reproduce-tiny"


def _last_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])


def _metrics_without_time(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_table_has_every_row_and_the_runs_numbers(first_run):
    table = (first_run / "results.md").read_text()
    print(table)
    rows = {r["method"]: r for r in json.loads((first_run / "results.json").read_text())["rows"]}
    # No logit columns in these features: every row but the encoder's, in the table's order.
    assert list(rows) == [m for m in METHODS if m != "encoder_logits"]
    assert TRAINED == ("dejavid_centroids", "dejavid_weights", "dejavid")
    for m in rows:
        line = next(line for line in table.splitlines() if line.startswith(f"| {TITLES[m]} |"))
        assert f"{100 * rows[m]['top1']:.2f}" in line and f"{100 * rows[m]['top5']:.2f}" in line
    for m in ("meanpool_lr", "knn_dtw", "dba_centroid"):
        cached = json.loads((first_run / "baselines" / f"{m}.json").read_text())["result"]
        assert cached == rows[m]
    for m in TRAINED:
        last = _last_metrics(first_run / m)
        assert last["epoch"] == 3
        assert (rows[m]["top1"], rows[m]["top5"]) == (last["val_top1"], last["val_top5"])
    # The known answers: the mean cannot see temporal order, the alignment can.
    assert rows["meanpool_lr"]["top1"] == 0.5
    assert rows["knn_dtw"]["top1"] == rows["dba_centroid"]["top1"] == 1.0
    assert rows["dejavid"]["top1"] == 1.0
    C, K, F = 2, 4, 2
    assert (rows["dejavid"]["head_params"], rows["dejavid"]["trained_params"]) == (2 * C * K * F,) * 2
    for m in ("dejavid_centroids", "dejavid_weights"):
        assert (rows[m]["head_params"], rows[m]["trained_params"]) == (2 * C * K * F, C * K * F)
    ckpts = {m: load_checkpoint(first_run / m / "last.pt") for m in TRAINED}
    assert ckpts["dejavid_centroids"]["config"]["freeze_weights"] is True
    assert ckpts["dejavid_weights"]["config"]["freeze_centroids"] is True
    # w_one_init: the frozen weights stay at theta = 0; the full run moved them.
    assert not ckpts["dejavid_centroids"]["model"]["theta"].any()
    assert ckpts["dejavid"]["model"]["theta"].any()
    assert "paper top-1" not in table and "share of encoder" in table


def test_plots_are_written(first_run):
    pytest.importorskip("matplotlib")
    for name in PLOTS:
        data = (first_run / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


def test_second_run_reuses_everything(tiny, first_run, monkeypatch, capsys):
    before = {p: p.stat().st_mtime_ns for p in first_run.rglob("*")
              if p.suffix in (".pt", ".jsonl") or p.parent.name == "baselines"}
    table = (first_run / "results.md").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("fit called again")
    monkeypatch.setattr(reproduce, "fit", no_training)
    assert reproduce.main(["--config", str(tiny), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("reusing finished run") == 3
    assert all(f"reusing {m} result" in out for m in ("meanpool_lr", "knn_dtw", "dba_centroid"))
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before and len(before) >= 3 + 3 * 3
    assert (first_run / "results.md").read_text() == table


def test_stopped_run_is_resumed(tiny, first_run, tmp_path, monkeypatch, capsys):
    """Ctrl-C during epoch 2 (as train_dejavid's signal handler would flag it): exit 130,
    then the same command resumes and ends with the uninterrupted run's metrics."""
    argv = ["--config", str(tiny), "--no-progress", "--methods", "dejavid",
            "--out", str(tmp_path / "r")]
    real = train_mod.train_one_epoch

    def stop_in_epoch_two(*args, **kwargs):
        if kwargs["epoch"] == 1:
            kwargs["stop"].requested = "SIGINT"
        return real(*args, **kwargs)
    monkeypatch.setattr(train_mod, "train_one_epoch", stop_in_epoch_two)
    assert reproduce.main(argv) == 130
    assert not (tmp_path / "r" / "results.md").exists()
    monkeypatch.setattr(train_mod, "train_one_epoch", real)
    capsys.readouterr()
    assert reproduce.main(argv) == 0
    assert "resuming DejaVid, full" in capsys.readouterr().out
    assert (_metrics_without_time(tmp_path / "r" / "dejavid")
            == _metrics_without_time(first_run / "dejavid"))


def test_run_with_other_settings_is_an_error(tiny, first_run):
    with pytest.raises(ValueError, match=r"lr: 0\.05 there, 0\.01 now"):
        reproduce.main(["--config", str(tiny), "--no-progress", "--methods", "dejavid",
                        "--lr", "0.01"])


def test_cli_errors_exit_2_without_traceback(tiny):
    for extra in (["--methods", "nope"], ["--run_name", "x"]):
        proc = subprocess.run([sys.executable, "reproduce.py", "--config", str(tiny), *extra],
                              cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_stage_timer_accumulates_and_null_timer_records_nothing():
    timer = StageTimer()
    with timer.stage("a"):
        sum(range(1000))
    with timer.stage("a"):
        pass
    assert list(timer.iterate("data", iter([1, 2, 3]))) == [1, 2, 3]
    row = timer.lap(epoch=1)
    assert list(row) == ["epoch", "a", "data"] and row["epoch"] == 1
    assert row["a"] > 0 and row["data"] >= 0
    assert timer.laps == [row] and timer.lap(epoch=2) == {"epoch": 2} and timer.totals == {}
    with pytest.raises(KeyError):          # an exception still charges the stage, then passes
        with timer.stage("b"):
            raise KeyError("x")
    assert "b" in timer.totals
    items = [1, 2]
    assert NULL_TIMER.iterate("data", items) is items
    assert NULL_TIMER.stage("x") is NULL_TIMER.stage("y")   # one shared no-op context
    assert NULL_TIMER.lap(epoch=1) == {} and not NULL_TIMER.enabled


def test_timing_is_opt_in_and_written_per_epoch(tiny, first_run, tmp_path, monkeypatch):
    assert not (first_run / "timing.json").exists()
    assert not (first_run / "dejavid" / "timing.jsonl").exists()
    monkeypatch.setenv("DEJAVID_TIMING", "1")
    out = tmp_path / "t"
    assert reproduce.main(["--config", str(tiny), "--no-progress", "--no-plots",
                           "--methods", "meanpool_lr,dejavid", "--out", str(out)]) == 0
    rows = json.loads((out / "timing.json").read_text())
    assert set(rows) == {"data check", "meanpool_lr", "dejavid"}
    lines = [json.loads(x) for x in (out / "dejavid" / "timing.jsonl").read_text().splitlines()]
    assert list(lines[0]) == ["before_epoch", "centroids"]     # loaded from the cache here
    assert [r["epoch"] for r in lines[1:]] == [1, 2, 3]
    for r in lines[1:]:
        stages = ("data", "forward", "backward", "optimizer", "eval")
        assert set(r) == {"epoch", "epoch_seconds", *stages}
        assert 0 < sum(r[k] for k in stages) <= r["epoch_seconds"]
    assert rows["dejavid"] >= sum(r["epoch_seconds"] for r in lines[1:])


def test_fit_fills_a_given_timer_per_epoch_without_a_run_folder():
    from dejavid.data.arrays import ArrayDataset, index_from_arrays
    from dejavid.config.settings import CentroidSpec, LoopSpec, TrainSettings
    videos = ramp_videos(4)
    X = [v[0] for v in videos.values()]
    index, tensors = index_from_arrays(X, [v[1] for v in videos.values()],
                                       split=[v[2] for v in videos.values()])
    timer = StageTimer()
    settings = TrainSettings(centroids=CentroidSpec(num_timesteps=3, dba_max_iter=2),
                             loop=LoopSpec(num_epochs=2, batch_size=4))
    train_mod.fit(ArrayDataset(index, tensors, "train"), ArrayDataset(index, tensors, "val"),
                  settings, device="cpu", progress=False, log=lambda *a: None, timer=timer)
    assert [list(r)[:2] for r in timer.laps] == [["before_epoch", "centroids"],
                                                 ["epoch", "epoch_seconds"],
                                                 ["epoch", "epoch_seconds"]]
    assert all(set(r) >= {"data", "forward", "backward", "optimizer", "eval"}
               for r in timer.laps[1:])


def test_tune_cv_chooses_before_the_dejavid_row_and_a_rerun_keeps_it(tiny, tmp_path, capsys):
    """reproduce.py honours tune: cv as train_dejavid.py does: the choice is made, recorded
    (tune.json) and trained; a second call reuses the finished run without choosing."""
    from dejavid.training.tune import TUNE_FILE
    out = tmp_path / "tuned"
    argv = ["--config", str(tiny), "--no-progress", "--no-plots", "--methods", "dejavid",
            "--out", str(out), "--tune", "cv", "--tune_folds", "2"]
    assert reproduce.main(argv) == 0
    record = json.loads((out / "dejavid" / TUNE_FILE).read_text())
    assert record["folds"] == 2 and record["candidates"]
    ckpt = torch.load(out / "dejavid" / "last.pt", weights_only=False)
    changes = record["chosen_changes"]
    if "step_pattern" in changes:
        assert ckpt["config"]["use_mm"] == (1 if changes["step_pattern"] == "hvd" else 0)
    assert "tune: cv over" in capsys.readouterr().out
    assert reproduce.main(argv) == 0
    assert "tune: cv over" not in capsys.readouterr().out


def test_plots_of_a_model_with_prototypes_band_and_resampled_inputs(tiny, tmp_path):
    """With every training video its own prototype (P > C, as tune: cv may choose) the
    plots show classes, not prototypes: the weights averaged over each class's prototypes,
    the video against its class's nearest prototype, aligned as the model aligns (band,
    resampled inputs)."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "protos"
    assert reproduce.main(["--config", str(tiny), "--no-progress", "--methods", "dejavid",
                           "--out", str(out), "--centroids_per_class", "all", "--use_mm", "1",
                           "--band", "0.3", "--resample_inputs", "true"]) == 0
    ckpt = load_checkpoint(out / "dejavid" / "last.pt")
    assert ckpt["model"]["mu"].shape[0] > len(ckpt["label_values"])     # P > C
    for name in PLOTS:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
