"""End to end on the real demo: train, checkpoints, resume (clean stop, SIGINT, SIGKILL),
determinism and evaluation with predictions."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import train_dejavid
from dejavid.training import run as train_mod
from conftest import DEMO_CONFIG, ROOT, demo_overrides

FAST = ["--num_timesteps", "8", "--sample_size_per_class", "20", "--dba_max_iter", "10",
        "--batch_size", "16", "--no-progress"]


def _argv(data, tmp, run, epochs, *extra):
    return ["--config", str(DEMO_CONFIG), *demo_overrides(data, tmp), "--num_epochs", str(epochs),
            "--run_name", run, *FAST, *extra]


def _metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("seconds")
    return rows


def _weights(run_dir: Path):
    ck = torch.load(run_dir / "last.pt", weights_only=False)
    return ck["model"]["mu"], ck["model"]["theta"]


def _same_run(a: Path, b: Path):
    mu_a, th_a = _weights(a)
    mu_b, th_b = _weights(b)
    print("max |dmu|", (mu_a - mu_b).abs().max().item(), "max |dtheta|", (th_a - th_b).abs().max().item())
    assert torch.equal(mu_a, mu_b) and torch.equal(th_a, th_b)
    assert _metrics(a) == _metrics(b)


@pytest.fixture(scope="module")
def reference_run(demo_data, tmp_path_factory):
    """An uninterrupted 3-epoch run every resume test is compared with."""
    tmp = tmp_path_factory.mktemp("ref")
    assert train_dejavid.main(_argv(demo_data, tmp, "full", 3)) == 0
    return tmp / "runs" / "full"


@pytest.fixture(scope="module")
def untrained_run(demo_data, reference_run):
    """The reference run's starting point, measured: the same settings and cached centroids,
    one epoch at lr = 1e-12, so no parameter moves (its epoch-1 losses are the start's)."""
    tmp = reference_run.parents[1]
    assert train_dejavid.main(_argv(demo_data, tmp, "untrained", 1, "--lr", "1e-12")) == 0
    return tmp / "runs" / "untrained"


def test_end_to_end_outputs(reference_run, untrained_run, capsys):
    rows = _metrics(reference_run)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    # Training improves on where it starts (DBA centroids, w = 1: already 0.96 on the
    # validation split): both losses fall, and validation accuracy rises.
    start, end = _metrics(untrained_run)[0], rows[-1]
    print("untrained", start, "\ntrained", end)
    assert end["train_loss"] < 0.9 * start["train_loss"]
    assert end["val_loss"] < 0.9 * start["val_loss"]
    assert end["val_top1"] > start["val_top1"]
    for name in ("last.pt", "best.pt"):
        ck = torch.load(reference_run / name, weights_only=False)
        assert {"model", "optimizer", "scheduler", "epoch", "rng", "config", "label_values"} <= set(ck)
    assert torch.load(reference_run / "last.pt", weights_only=False)["epoch"] == 3
    assert torch.load(reference_run / "best.pt", weights_only=False)["label_values"] == list(range(1, 10))


def test_second_run_reuses_cached_centroids(demo_data, reference_run, capsys):
    tmp = reference_run.parents[1]
    assert train_dejavid.main(_argv(demo_data, tmp, "again", 1)) == 0
    cap = capsys.readouterr()
    assert "reusing cached centroids" in cap.out + cap.err


def test_determinism_same_seed_same_result(demo_data, reference_run, tmp_path):
    assert train_dejavid.main(_argv(demo_data, tmp_path, "twin", 3)) == 0
    _same_run(reference_run, tmp_path / "runs" / "twin")


def test_existing_run_folder_is_not_overwritten(demo_data, reference_run):
    tmp = reference_run.parents[1]
    with pytest.raises(ValueError, match="--resume"):
        train_dejavid.main(_argv(demo_data, tmp, "full", 3))


def test_resume_after_clean_epochs(demo_data, reference_run, tmp_path):
    # stop a 3-epoch run after its first epoch, then resume it
    argv = _argv(demo_data, tmp_path, "r", 3)
    run = tmp_path / "runs" / "r"

    class StopAfterEpoch1(train_mod.StopRequest):
        @property
        def requested(self):
            rows = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []
            return "SIGTERM" if len(rows) >= 1 else None

        @requested.setter
        def requested(self, v):
            pass

    orig = train_mod.StopRequest
    train_mod.StopRequest = StopAfterEpoch1
    try:
        assert train_dejavid.main(argv) == 130
    finally:
        train_mod.StopRequest = orig
    assert torch.load(run / "last.pt", weights_only=False)["epoch"] == 1
    assert train_dejavid.main(["--resume", str(run), "--no-progress"]) == 0
    _same_run(reference_run, run)


def test_resume_mid_epoch_is_exact(demo_data, reference_run, tmp_path):
    """A stop after 5 steps of epoch 2 writes a mid-epoch checkpoint; resuming it
    ends exactly where the uninterrupted run ends."""
    calls = {"n": 0}

    class StopMidEpoch2(train_mod.StopRequest):
        @property
        def requested(self):
            # read once per step (17 per epoch: 270 / 16) and once after each epoch
            calls["n"] += 1
            return "SIGINT" if calls["n"] >= 17 + 1 + 5 else None

        @requested.setter
        def requested(self, v):
            pass

    run = tmp_path / "runs" / "m"
    orig = train_mod.StopRequest
    train_mod.StopRequest = StopMidEpoch2
    try:
        assert train_dejavid.main(_argv(demo_data, tmp_path, "m", 3)) == 130
    finally:
        train_mod.StopRequest = orig
    ck = torch.load(run / "last.pt", weights_only=False)
    assert (ck["epoch"], ck["step"]) == (1, 5) and ck["snapshot"] is not None
    assert train_dejavid.main(["--resume", str(run), "--no-progress"]) == 0
    _same_run(reference_run, run)


def test_resume_refuses_changed_training_keys(demo_data, reference_run):
    with pytest.raises(ValueError, match="cannot change lr"):
        train_dejavid.main(["--resume", str(reference_run), "--lr", "0.5"])


# A training process that waits for its signal at a chosen step: train_dejavid.main with
# StopRequest.step_done wrapped so that after ``pause_at`` training steps (counted over the
# whole process) it writes ``marker`` and sleeps until a signal arrives (SIGKILL ends the
# process there; SIGINT/SIGTERM go through the real handler, which sets ``requested``).
# The signal therefore always lands mid-run at that step, however fast the machine is; a
# real signal sent at a moment the test picks could land after the run had finished.
_PAUSED_TRAIN = """
import sys, time
from pathlib import Path
from dejavid.training.signals import StopRequest
import train_dejavid

marker, pause_at, argv = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
step_done, steps = StopRequest.step_done, [0]


def paused_step_done(self):
    step_done(self)
    steps[0] += 1
    if steps[0] == pause_at:
        marker.write_text(str(steps[0]))
        deadline = time.time() + 300
        while self.requested is None and time.time() < deadline:
            time.sleep(0.01)


StopRequest.step_done = paused_step_done
sys.exit(train_dejavid.main(argv))
"""
STEPS_PER_EPOCH = 17             # 270 training videos in batches of 16
PAUSE_AT = STEPS_PER_EPOCH + 5   # epoch 2, after its 5th step


def _spawn_paused(argv, marker: Path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", _PAUSED_TRAIN, str(marker), str(PAUSE_AT),
                             *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)


def _wait_for(marker: Path, proc, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if marker.exists():
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended before the pause:\n{proc.stdout.read()}")
        time.sleep(0.02)
    raise AssertionError("timed out waiting for training")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM],
                         ids=lambda s: s.name)
def test_killed_run_resumes_to_identical_result(demo_data, reference_run, tmp_path, sig):
    """A real process signalled in epoch 2, after its 5th step (SIGKILL: no chance to save,
    the epoch-1 checkpoint remains; SIGINT/SIGTERM: a mid-epoch checkpoint, exit 130),
    resumes from there and ends with the same weights and metrics as the uninterrupted run."""
    run = tmp_path / "runs" / "k"
    marker = tmp_path / "paused"
    proc = _spawn_paused(_argv(demo_data, tmp_path, "k", 3), marker)
    try:
        _wait_for(marker, proc)
        proc.send_signal(sig)
        out = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL, out
        where = (1, 0)                     # the end-of-epoch-1 checkpoint
    else:
        assert proc.returncode == 130, out
        assert f"{sig.name} received" in out and f"--resume {run}" in out, out
        assert f"stopped by {sig.name} in epoch 2 after 5 steps" in out, out
        where = (1, 5)                     # written by the stop, mid-epoch 2
    ck = torch.load(run / "last.pt", weights_only=False)
    assert (ck["epoch"], ck["step"]) == where
    assert [r["epoch"] for r in _metrics(run)] == [1]
    res = subprocess.run([sys.executable, str(ROOT / "train_dejavid.py"), "--resume", str(run),
                          "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"resuming at epoch 2, step {where[1]}" in res.stdout, res.stdout
    _same_run(reference_run, run)


def test_eval_only_writes_predictions(demo_data, reference_run, tmp_path, capsys):
    out_csv = tmp_path / "preds.csv"
    best = reference_run / "best.pt"
    assert train_dejavid.main(["--eval-only", "--checkpoint", str(best), "--predictions", str(out_csv),
                               "--no-progress"]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(open(out_csv)))
    assert len(rows) == 370 and len({r["video_id"] for r in rows}) == 370
    acc = sum(int(r["correct"]) for r in rows) / len(rows)
    assert all(len(r["pred_top5"].split()) == 5 and len(r["dist_top5"].split()) == 5 for r in rows)
    assert all(int(r["pred_top5"].split()[0]) == int(r["true_label"]) for r in rows if r["correct"] == "1")
    dists = [list(map(float, r["dist_top5"].split())) for r in rows]
    assert all(d == sorted(d) for d in dists)
    best_val = max(r["val_top1"] for r in _metrics(reference_run))
    assert f"top1 {acc:.4f}" in printed and acc == pytest.approx(best_val)


def test_cli_reports_user_errors_without_traceback(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "train_dejavid.py"), "--config",
                          str(tmp_path / "nope.yaml")], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2 and "config file not found" in res.stderr
    assert "Traceback" not in res.stderr
