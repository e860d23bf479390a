"""Optional TensorBoard logging: `--tensorboard DIR` writes each epoch's metrics.jsonl row
as scalars (skipped where the tensorboard package is not installed)."""
from __future__ import annotations

import json

import pytest

import train_dejavid
from conftest import DEMO_CONFIG, demo_overrides

FAST = ["--num_timesteps", "8", "--sample_size_per_class", "10", "--dba_max_iter", "3",
        "--batch_size", "32", "--num_epochs", "3", "--no-progress"]


def test_tensorboard_scalars_are_the_metrics_rows(demo_data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    board = tmp_path / "tb"
    argv = ["--config", str(DEMO_CONFIG), *demo_overrides(demo_data, tmp_path), "--run_name",
            "r", "--tensorboard", str(board), *FAST]
    assert train_dejavid.main(argv) == 0
    rows = [json.loads(line) for line in
            (tmp_path / "runs" / "r" / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(board))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == {"loss/train", "loss/val", "top1/train", "top1/val", "top5/val", "lr",
                    "seconds"}
    for key, tag in (("train_loss", "loss/train"), ("val_top1", "top1/val"), ("lr", "lr")):
        got = [(e.step, e.value) for e in events.Scalars(tag)]
        assert got == [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in rows]


def test_a_missing_tensorboard_package_is_one_message(demo_data, tmp_path, monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    argv = ["--config", str(DEMO_CONFIG), *demo_overrides(demo_data, tmp_path), "--run_name",
            "m", "--tensorboard", str(tmp_path / "tb"), *FAST]
    from dejavid.config import cli
    with pytest.raises(SystemExit) as info:
        cli.main_guard(lambda: train_dejavid.main(argv))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "needs the tensorboard package: pip install tensorboard" in err
