"""What a newcomer meets first: a finished run's --resume, the closest config key to a typo,
reference lines that look different, and baseline timings without numba's compilation."""
from __future__ import annotations

import pytest

import train_dejavid
from conftest import DEMO_CONFIG, demo_overrides
from dejavid.config.files import load_config

FAST = ["--num_timesteps", "8", "--sample_size_per_class", "10", "--dba_max_iter", "3",
        "--batch_size", "32", "--num_epochs", "2", "--no-progress"]


def test_resume_of_a_finished_run_says_so_and_exits_0(demo_data, tmp_path, capsys):
    argv = ["--config", str(DEMO_CONFIG), *demo_overrides(demo_data, tmp_path), "--run_name",
            "done", *FAST]
    assert train_dejavid.main(argv) == 0
    run = tmp_path / "runs" / "done"
    before = (run / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert train_dejavid.main(["--resume", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "the run already finished: all 2 epochs are done" in out
    assert "resuming at epoch" not in out
    assert (run / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize("typo, closest", [("learning_rate", None), ("num_epoch", "num_epochs"),
                                           ("standardise", "standardize"), ("bacth_size",
                                                                            "batch_size")])
def test_a_mistyped_key_suggests_the_closest_one(typo, closest):
    with pytest.raises(ValueError) as info:
        load_config(None, [f"--{typo}", "1"])
    message = str(info.value)
    assert f"unknown config key '{typo}'" in message and "valid keys:" in message
    if closest:
        assert f"did you mean '{closest}'?" in message
    else:
        assert "did you mean" not in message


def test_reference_lines_of_the_learning_curves_all_look_different(tmp_path):
    pytest.importorskip("matplotlib")
    from dejavid.report import plots
    seen = {}
    real = plots._save

    def keep(fig, path):
        seen["fig"] = fig
        return real(fig, path)
    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "train_top1": 0.5,
             "val_top1": 0.6} for e in (1, 2, 3)]
    reference = {"mean pool + LR": 0.968, "DBA centroid": 0.959, "1-NN DTW": 0.935}
    import unittest.mock as mock
    with mock.patch.object(plots, "_save", keep):
        plots.learning_curves({"DejaVid": rows}, tmp_path / "c.png", reference)
    acc = seen["fig"].axes[1]
    from matplotlib.colors import to_hex
    styles = {}
    for line in acc.get_lines():
        label = line.get_label()
        styles[label] = (to_hex(line.get_color()), line.get_linestyle())
    refs = [s for label, s in styles.items() if label.split(":")[0] in reference]
    curves = [s for label, s in styles.items() if label.split(":")[0] not in reference]
    assert len(refs) == 3 and len({r[0] for r in refs}) == 3 and len({r[1] for r in refs}) == 3
    assert not {r[0] for r in refs} & {c[0] for c in curves}


def test_baseline_rows_warm_numba_up_before_the_clock_starts(demo_data, tmp_path, monkeypatch):
    """The timed DBA and 1-NN rows run one tiny alignment first (numba's compilation is paid
    there); a cached centroid row needs none."""
    from dejavid.config.settings import CentroidSpec, index_from_config
    from dejavid.data.dataset import TSEDataset
    from dejavid.report import rows
    cfg = load_config(DEMO_CONFIG, [*demo_overrides(demo_data, tmp_path), "--num_timesteps", "4"])
    index = index_from_config(cfg, progress=False)
    train, val = TSEDataset(index, "train", True), TSEDataset(index, "val", True)
    calls = []
    real = rows.warm_up
    monkeypatch.setattr(rows, "warm_up", lambda *a: (calls.append(a), real(*a)))
    spec = CentroidSpec(4, "hv", 5, 2)
    rows.dba_centroid(train, val, spec, tmp_path / "c", log=lambda *a: None)
    rows.dba_centroid(train, val, spec, tmp_path / "c", log=lambda *a: None)
    rows.knn_dtw(train, val, "hv")
    assert calls == [(12, "hv", "auto"), (12, "hv", "auto")]
