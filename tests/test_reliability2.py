"""Issue #18: run folders that cannot be corrupted, no silent NaN, no ignored flags,
checkpoints that cannot run code, and one-paragraph messages instead of tracebacks.

Most cases call ``train_dejavid.main`` in-process on a tiny two-class data set; the ones
where the exit code or stderr matters run the script in a subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train_dejavid
from conftest import ROOT
from dejavid.training import run as train_mod
from dejavid.config.settings import index_from_config
from helpers import (good_videos, level_videos, make_config, ramp_videos, replacing,
                     write_config_yaml, write_dataset)

TINY = dict(num_timesteps=4, sample_size_per_class=5, dba_max_iter=3, num_epochs=3,
            batch_size=4, device="cpu", lr=0.05)


@pytest.fixture
def tiny(tmp_path):
    """(config path, data paths, tmp folder) of a 3-class data set, 12 train / 12 val videos
    (3 classes: with 2, the standardised logits make the loss constant and nothing trains)."""
    paths = write_dataset(tmp_path, level_videos({"train": 4, "val": 4}))
    return write_config_yaml(tmp_path / "tiny.yaml", paths, **TINY), paths, tmp_path


def _train(cfg, *extra) -> int:
    return train_dejavid.main(["--config", str(cfg), "--no-progress", *extra])


def _script(*argv, env=None, timeout=300):
    """train_dejavid.py in a subprocess: (returncode, stdout, stderr)."""
    res = subprocess.run([sys.executable, str(ROOT / "train_dejavid.py"), *map(str, argv)],
                         cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                         env=dict(os.environ, **(env or {})))
    return res.returncode, res.stdout, res.stderr


def _assert_user_error(rc, err, *words):
    """Exit 2, one ``error:`` paragraph naming ``words``, no traceback."""
    assert rc == 2, err
    assert "Traceback" not in err, err
    assert err.count("error:") == 1, err
    for w in words:
        assert w in err, err


# --- item 8: checkpoints load with weights_only=True; anything else is refused ----------

class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoints_load_weights_only(tiny):
    cfg, _, tmp = tiny
    assert _train(cfg, "--run_name", "a", "--num_epochs", "1") == 0
    for name in ("last.pt", "best.pt"):
        ck = torch.load(tmp / "runs" / "a" / name, weights_only=True)
        assert ck["format"] == 2 and ck["epoch"] == 1


def test_crafted_checkpoint_is_refused_and_runs_nothing(tiny):
    cfg, _, tmp = tiny
    assert _train(cfg, "--run_name", "a", "--num_epochs", "1") == 0
    ck = torch.load(tmp / "runs" / "a" / "best.pt", weights_only=True)
    marker = tmp / "marker"
    ck["config"]["name"] = _RunsCode(marker)
    evil = tmp / "evil.pt"
    torch.save(ck, evil)
    for argv in (["--eval-only", "--checkpoint", str(evil)], ["--resume", str(evil)]):
        with pytest.raises(ValueError, match="could run code"):
            train_dejavid.main([*argv, "--no-progress"])
        assert not marker.exists()


# --- item 2: best.pt is never lost ------------------------------------------------------

class _Crash(Exception):
    pass


def test_crash_between_the_two_checkpoint_writes_keeps_best(tiny, monkeypatch):
    """The process dies right after the first of the two writes of an improved epoch;
    the resumed run finishes with a best.pt equal to an uninterrupted run's."""
    cfg, _, tmp = tiny
    assert _train(cfg, "--run_name", "ref") == 0
    real = train_mod.save_checkpoint
    writes = []

    def crash_after_first_write_of_epoch_1(path, **kw):
        real(path, **kw)
        writes.append(Path(path).name)
        if kw["epoch"] == 1 and kw["step"] == 0 and len(writes) == 1:
            raise _Crash

    monkeypatch.setattr(train_mod, "save_checkpoint", crash_after_first_write_of_epoch_1)
    with pytest.raises(_Crash):
        _train(cfg, "--run_name", "r")
    monkeypatch.undo()
    assert writes == ["best.pt"]       # best.pt is written before last.pt
    run = tmp / "runs" / "r"
    at_crash = torch.load(run / "best.pt", weights_only=True)["model"]["theta"]
    assert train_dejavid.main(["--resume", str(run), "--no-progress"]) == 0
    for name in ("best.pt", "last.pt"):
        a = torch.load(tmp / "runs" / "ref" / name, weights_only=True)
        b = torch.load(run / name, weights_only=True)
        assert a["epoch"] == b["epoch"] and a["best_top1"] == b["best_top1"]
        assert torch.equal(a["model"]["mu"], b["model"]["mu"])
        assert torch.equal(a["model"]["theta"], b["model"]["theta"])
    assert not torch.equal(at_crash, b["model"]["theta"])          # epochs 2, 3 trained


def test_resume_refuses_a_run_whose_best_checkpoint_is_missing(tiny):
    cfg, _, tmp = tiny
    run = tmp / "runs" / "r"
    assert _train(cfg, "--run_name", "r", "--num_epochs", "1") == 0
    (run / "best.pt").unlink()
    ck = torch.load(run / "last.pt", weights_only=True)
    ck["config"]["num_epochs"] = 2        # leave an epoch to do
    torch.save(ck, run / "last.pt")
    with pytest.raises(ValueError, match="best.pt is missing"):
        train_dejavid.main(["--resume", str(run), "--no-progress"])


# --- items 1, 3: one run per folder ---------------------------------------------------

def test_second_run_on_a_locked_folder_refuses_naming_the_holder(tiny):
    """Another process holds the run folder (as a run does for its lifetime): a second run
    on it refuses with that process's pid and writes nothing there."""
    cfg, _, tmp = tiny
    run = tmp / "runs" / "same"
    run.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from dejavid.io import RunLock; "
         f"RunLock({str(run)!r}).acquire(); print('locked', flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=f"in use by another run \\(pid {holder.pid} on host"):
            _train(cfg, "--run_name", "same")
        assert {p.name for p in run.iterdir()} == {".lock"}
    finally:
        holder.kill()
        holder.wait()
    assert _train(cfg, "--run_name", "same", "--num_epochs", "1") == 0   # free again


def test_two_runs_started_together_on_one_folder_never_mix(tiny):
    """Two real processes, same --run_name, started at once: one trains, the other refuses
    (whichever comes second: the folder is locked, or already holds the first's files);
    the folder holds exactly one run."""
    cfg, _, tmp = tiny
    argv = [sys.executable, str(ROOT / "train_dejavid.py"), "--config", str(cfg), "--run_name",
            "same", "--no-progress"]
    procs = [subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    err = next(e for rc, e in results if rc == 2)
    assert "Traceback" not in err
    assert "in use by another run (pid" in err or "already holds a run" in err, err
    rows = (tmp / "runs" / "same" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3]


def test_default_run_names_never_collide(tiny, monkeypatch):
    """Two runs without --run_name started in the same second get two folders."""
    cfg, _, tmp = tiny
    monkeypatch.setattr("time.strftime", lambda fmt, *a: "20260101-000000")
    assert _train(cfg, "--num_epochs", "1") == 0
    assert _train(cfg, "--num_epochs", "1") == 0
    runs = sorted(p.name for p in (tmp / "runs").iterdir())
    assert runs == ["tiny-20260101-000000", "tiny-20260101-000000-2"]
    for name in runs:
        rows = (tmp / "runs" / name / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(r)["epoch"] for r in rows] == [1]


def test_new_run_refuses_a_folder_holding_run_files_without_last(tiny):
    cfg, _, tmp = tiny
    run = tmp / "runs" / "old"
    assert _train(cfg, "--run_name", "old", "--num_epochs", "1") == 0
    (run / "last.pt").unlink()

    def files():  # .lock names the latest process that held the folder's lock: not run data
        return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}

    before = files()
    with pytest.raises(ValueError, match=r"already holds a run \(best.pt, metrics.jsonl\)"):
        _train(cfg, "--run_name", "old")
    assert {"best.pt", "metrics.jsonl"} <= set(before)
    assert files() == before


# --- item 4: NaN and Inf stop the run --------------------------------------------------

def test_nan_mid_run_stops_with_last_good_checkpoint_kept(tiny, monkeypatch):
    """Training files overwritten with NaN after epoch 1 (in_memory false): the run stops
    in epoch 2 with a clear error; last.pt and best.pt stay epoch 1's finite weights."""
    cfg, paths, tmp = tiny
    from dejavid.training.metrics_log import MetricsLog
    real_append = MetricsLog.append

    def append_then_poison(self, row):
        real_append(self, row)
        for victim in paths["id2feats"].glob("train_*.pt"):   # (a few stay cached in memory)
            st = victim.stat()
            torch.save(torch.full_like(torch.load(victim), float("nan")), victim)
            # Same size and time as before: a change the run's file check cannot see
            # (issue #25 item 2 stops a visible one earlier), so the loss goes NaN.
            os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))

    monkeypatch.setattr(MetricsLog, "append", append_then_poison)
    with pytest.raises(ValueError, match=r"diverged at epoch 2, step \d+: the loss is nan.*"
                                         r"last good checkpoint.*last.pt, is kept"):
        _train(cfg, "--run_name", "n", "--store", "false")  # the files are read each epoch
    run = tmp / "runs" / "n"
    for name in ("last.pt", "best.pt"):
        ck = torch.load(run / name, weights_only=True)
        assert ck["epoch"] == 1
        assert all(bool(torch.isfinite(t).all()) for t in ck["model"].values())
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_overflowing_features_exit_2_without_traceback(tmp_path):
    """Features up to 1e38: the distances overflow float32; the script stops with
    exit 2 and one paragraph, and leaves no empty run folder."""
    videos = {k: (x * 1e38, lab, split) for k, (x, lab, split) in ramp_videos(3).items()}
    paths = write_dataset(tmp_path, videos)
    # (standardize: true, the default, scales such features down, and then they train.)
    cfg = write_config_yaml(tmp_path / "big.yaml", paths, **TINY, standardize=False)
    rc, _, err = _script("--config", cfg, "--run_name", "big", "--no-progress")
    _assert_user_error(rc, err, "diverged", "overflow float32")
    assert not (tmp_path / "runs" / "big").exists()


def test_huge_learning_rate_is_caught_and_leaves_no_run_folder(tmp_path):
    paths = write_dataset(tmp_path, level_videos({"train": 4, "val": 3}))
    cfg = write_config_yaml(tmp_path / "lr.yaml", paths, **{**TINY, "lr": 1e4})
    with pytest.raises(ValueError, match=r"diverged at epoch 1, step \d+: the loss is nan\. No "
                                         r"checkpoint was written.*lr = 10000"):
        _train(cfg)
    assert list((tmp_path / "runs").iterdir()) == []


def test_one_class_data_set_is_refused(tmp_path):
    videos = {k: v for k, v in ramp_videos(3).items() if v[1] == 0}
    cfg = write_config_yaml(tmp_path / "one.yaml", write_dataset(tmp_path, videos), **TINY)
    with pytest.raises(ValueError, match="at least 2 classes"):
        _train(cfg)


# --- item 5: values that would spoil training are refused before any work ---------------

@pytest.mark.parametrize("key, value, message", [
    ("lr", ".nan", "lr must be a finite number, got nan"),
    ("lr", ".inf", "lr must be a finite number, got inf"),
    ("lr", "-0.1", "lr must be > 0"),
    ("ms_lr_div", ".inf", "ms_lr_div must be a finite number"),
    ("min_lr_ratio", "-0.5", "min_lr_ratio must be >= 0, got -0.5"),
    ("min_lr_ratio", "1.5", "min_lr_ratio must be <= 1"),
    ("std_eps", "-1e-6", "std_eps must be > 0"),
    ("std_eps", "0", "std_eps must be > 0"),
    ("weight_decay", "-0.01", "weight_decay must be >= 0"),
    ("betas", "[0.9, 1.0]", "each of betas must be < 1"),
    ("mu_betas", "[-0.1, 0.9]", "each of mu_betas must be >= 0"),
    ("seed", "-1", "seed must be >= 0, got -1"),
    ("seed", str(2**32), "seed must be <= 4294967295"),
    ("centroid_seed", "-3", "centroid_seed must be >= 0, got -3"),
    ("train_split", "trian", "train_split must be one of train, val, test, got 'trian'"),
])
def test_out_of_range_values_are_refused_before_any_work(tiny, key, value, message):
    cfg, _, tmp = tiny
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        _train(cfg, f"--{key}", value)
    assert not (tmp / "runs").exists() and not (tmp / "cache").exists()


def test_settings_dataclasses_refuse_the_same_values():
    from dejavid.config.settings import CentroidSpec, LoopSpec, OptimSpec
    for make, message in [(lambda: OptimSpec(lr=float("nan")), "lr must be a finite"),
                          (lambda: OptimSpec(min_lr_ratio=-1.0), "min_lr_ratio must be >= 0"),
                          (lambda: OptimSpec(betas=(0.9, 2.0)), "each of betas must be < 1"),
                          (lambda: LoopSpec(std_eps=-1.0), "std_eps must be > 0"),
                          (lambda: LoopSpec(seed=-1), "seed must be >= 0"),
                          (lambda: CentroidSpec(seed=-1), "centroid_seed must be >= 0")]:
        with pytest.raises(ValueError, match=message):
            make()


# --- item 6: no flag is silently ignored -------------------------------------------------

def test_eval_only_with_config_evaluates_that_configs_data(tiny, capsys):
    cfg, _, tmp = tiny
    assert _train(cfg, "--run_name", "a", "--num_epochs", "1") == 0
    other = write_dataset(tmp / "other", level_videos({"train": 2, "val": 2}, seed=1))
    other_cfg = write_config_yaml(tmp / "other.yaml", other, **TINY)
    capsys.readouterr()
    assert train_dejavid.main(["--eval-only", "--checkpoint", str(tmp / "runs" / "a" / "best.pt"),
                               "--config", str(other_cfg), "--no-progress"]) == 0
    assert "eval on 'val' (6 videos)" in capsys.readouterr().out     # not the 12 of its own data
    wide = write_dataset(tmp / "wide", {k: (torch.cat([x, x], 1), lab, split) for k, (x, lab, split)
                                        in level_videos({"train": 2, "val": 1}).items()})
    wide_cfg = write_config_yaml(tmp / "wide.yaml", wide, **TINY)
    with pytest.raises(ValueError, match="F = 6 features per step but the checkpoint was "
                                         "trained on F = 3"):
        train_dejavid.main(["--eval-only", "--checkpoint", str(tmp / "runs" / "a" / "best.pt"),
                            "--config", str(wide_cfg), "--no-progress"])


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "x.pt"], "--checkpoint only work"),
    (["--predictions", "p.csv"], "--predictions only work"),
    (["--resume", "RUN"], "--config cannot apply"),
    (["--eval-only", "--resume", "RUN", "--checkpoint", "x.pt"], "exclude each other"),
])
def test_flags_that_would_be_ignored_are_errors(tiny, argv, message):
    cfg, _, tmp = tiny
    argv = [a.replace("RUN", str(tmp / "runs" / "r")) for a in argv]
    with pytest.raises(ValueError, match=message):
        _train(cfg, *argv)
    assert not (tmp / "runs").exists()


# --- item 7: a resume on changed data is refused; a resume skips the centroids -----------

def _stopped_run(cfg, tmp, monkeypatch, name="r") -> Path:
    """A run stopped after 2 training steps (mid-epoch checkpoint, exit 130)."""
    monkeypatch.setenv("DEJAVID_STOP_AFTER_STEPS", "2")
    assert _train(cfg, "--run_name", name) == 130
    monkeypatch.delenv("DEJAVID_STOP_AFTER_STEPS")
    return tmp / "runs" / name


def test_resume_on_changed_data_is_refused_naming_what_changed(tiny, monkeypatch, capsys):
    cfg, paths, tmp = tiny
    run = _stopped_run(cfg, tmp, monkeypatch)
    for vid in ("train_c0_000", "train_c0_001", "train_c1_002", "train_c2_003"):   # a third
        f = paths["id2feats"] / f"{vid}.pt"
        torch.save(torch.load(f) + 0.5, f)
    with pytest.raises(ValueError, match=r"split 'train' \(train\): 4 of 12 videos have other "
                                         r"contents or labels, 0 added, 0 removed \(e.g. "
                                         r"'train_c0_000', 'train_c0_001', 'train_c1_002'\).*--allow-changed-data"):
        train_dejavid.main(["--resume", str(run), "--no-progress"])
    assert train_dejavid.main(["--resume", str(run), "--no-progress",
                               "--allow-changed-data"]) == 0
    assert "warning: continuing on changed data" in capsys.readouterr().out


def test_resume_neither_computes_nor_loads_centroids(tiny, monkeypatch, capsys):
    cfg, _, tmp = tiny
    run = _stopped_run(cfg, tmp, monkeypatch)
    import shutil
    shutil.rmtree(tmp / "cache")
    capsys.readouterr()
    assert train_dejavid.main(["--resume", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "computing centroids" not in out and "reusing cached centroids" not in out
    assert not list((tmp / "cache").glob("centroids_*"))  # (the feature store is rebuilt there)


# --- item 9: one-paragraph messages instead of tracebacks -------------------------------

def _guarded(code: str, *argv, timeout=300):
    """Run ``code`` (which may patch the library) and then train_dejavid.py's main under
    main_guard, as the script does: (returncode, stdout, stderr)."""
    prog = (f"import sys\nsys.argv = ['train_dejavid.py'] + {list(map(str, argv))!r}\n{code}\n"
            "import train_dejavid\nfrom dejavid.config import cli\ncli.main_guard(train_dejavid.main)\n")
    res = subprocess.run([sys.executable, "-c", prog], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout)
    return res.returncode, res.stdout, res.stderr


@pytest.mark.parametrize("tensor, message", [
    (torch.zeros(5, 0), r"no features \(F = 0"),
    (torch.ones(5, 2).to_sparse(), "sparse tensor"),
    (torch.ones(5, 2, dtype=torch.complex64), r"complex tensor \(torch.complex64\)"),
])
def test_data_check_names_zero_width_sparse_and_complex_tensors(tmp_path, tensor, message):
    from dejavid.data.dataset import load_index
    videos = ramp_videos(2)
    videos["train_up000"] = (tensor, 0, "train")
    paths = write_dataset(tmp_path, videos)
    with pytest.raises(ValueError, match=r"(?s)1 problem.*video 'train_up000'.*" + message):
        load_index(**{k: paths[k] for k in ("id2feats", "id2splits", "id2labels", "id2fname")},
                   progress=False)


@pytest.mark.parametrize("key", ["output_dir", "cache_dir"])
def test_unusable_output_locations_fail_before_any_work(tiny, key):
    cfg, _, tmp = tiny
    blocker = tmp / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match=f"{key} .* is not a folder"):
        _train(cfg, f"--{key}", str(blocker / "sub"))
    assert not (tmp / "cache").exists() and not (tmp / "runs").exists()


def test_unwritable_predictions_path_fails_before_evaluating(tiny):
    cfg, _, tmp = tiny
    assert _train(cfg, "--run_name", "a", "--num_epochs", "1") == 0
    (tmp / "preds.csv").mkdir()
    rc, out, err = _script("--eval-only", "--checkpoint", tmp / "runs" / "a" / "best.pt",
                           "--predictions", tmp / "preds.csv", "--no-progress")
    _assert_user_error(rc, err, "--predictions file", "is a folder")
    assert "eval on" not in out


def test_invalid_yaml_is_one_message(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1,\nnum_epochs: 3\n")
    rc, _, err = _script("--config", bad)
    _assert_user_error(rc, err, "is not valid YAML", "line")


def test_a_key_named_twice_in_a_config_is_refused(tmp_path):
    """PyYAML keeps the last of a repeated key; the config loader names both lines."""
    from dejavid.config.files import load_config
    twice = tmp_path / "twice.yaml"
    twice.write_text("lr: 0.1\nbatch_size: 4\nlr: 0.2\n")
    with pytest.raises(ValueError, match=r"'lr' appears twice \(lines 1 and 3\)"):
        load_config(twice)
    for path in sorted((ROOT / "configs").glob("*.yaml")):   # every shipped config loads
        load_config(path)


def test_full_disk_is_one_message_and_leaves_no_run_folder(tiny):
    cfg, _, tmp = tiny
    patch = ("import errno, torch\n"
             "def full(obj, f, *a, **k):\n"
             "    raise OSError(errno.ENOSPC, 'No space left on device', str(f))\n"
             "torch.save = full\n")
    rc, _, err = _guarded(patch, "--config", cfg, "--run_name", "full", "--no-progress")
    _assert_user_error(rc, err, "No space left on device")
    assert not (tmp / "runs" / "full").exists()


@pytest.mark.parametrize("where", ["dejavid.training.run.load_or_compute_centroids",
                                   "dejavid.config.settings.index_from_config"])
def test_ctrl_c_during_data_check_or_centroids_exits_130_in_one_line(tiny, where):
    cfg, _, tmp = tiny
    patch = replacing(where, "raise KeyboardInterrupt")
    rc, _, err = _guarded(patch, "--config", cfg, "--run_name", "c", "--no-progress")
    assert rc == 130, err
    assert "Traceback" not in err and err.strip().splitlines() == ["interrupted (Ctrl-C)"]
    assert not (tmp / "runs" / "c").exists()


def test_feature_file_deleted_mid_run_is_one_message(tiny, monkeypatch):
    cfg, paths, tmp = tiny
    from dejavid.training.metrics_log import MetricsLog
    real_append = MetricsLog.append

    def append_then_delete(self, row):
        real_append(self, row)
        for f in paths["id2feats"].glob("train_*.pt"):
            f.unlink()

    monkeypatch.setattr(MetricsLog, "append", append_then_delete)
    # (issue #25 item 2: found by the file check at the next epoch start)
    with pytest.raises(ValueError, match=r"feature file\(s\) of split 'train' changed or were "
                                         r"deleted during the run \(e.g. 'train_\w+.pt'"):
        _train(cfg, "--run_name", "d", "--store", "false")  # the files are read each epoch
    assert torch.load(tmp / "runs" / "d" / "last.pt", weights_only=True)["epoch"] == 1


# --- item 11: under torchrun, rank 0's message is the only one --------------------------

@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_torchrun_user_error_is_reported_once_without_rank_tracebacks(tiny):
    """Rank 0 refuses the run folder (it holds another run's metrics); rank 1 learns of it
    at the same collective and exits quietly, instead of failing at the next one."""
    cfg, _, tmp = tiny
    (tmp / "runs" / "taken").mkdir(parents=True)
    (tmp / "runs" / "taken" / "metrics.jsonl").write_text('{"epoch": 1}\n')
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", str(ROOT / "train_dejavid.py"), "--config",
                          str(cfg), "--run_name", "taken", "--no-progress"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert out.count("error: run folder") == 1 and "already holds a run (metrics.jsonl)" in out
    # torchrun prints its own summary; neither rank may print a traceback of ours
    assert str(ROOT / "dejavid") not in out and 'train_dejavid.py", line' not in out, out
    assert "exitcode  : 2" in out, out


def test_a_refused_default_named_run_leaves_no_folder(tmp_path):
    videos = {k: v for k, v in ramp_videos(3).items() if v[1] == 0}
    cfg = write_config_yaml(tmp_path / "one.yaml", write_dataset(tmp_path, videos), **TINY)
    with pytest.raises(ValueError, match="at least 2 classes"):
        _train(cfg)
    assert list((tmp_path / "runs").iterdir()) == []


def test_old_format_checkpoint_is_refused_then_upgraded_resumes_exactly(tiny, monkeypatch):
    """A checkpoint of the earlier format (pickled numpy/python RNG states) is refused with
    the command that converts it; converted, it resumes to the uninterrupted run's weights."""
    import random

    import numpy as np

    from dejavid.training.checkpoint import upgrade_checkpoint
    from dejavid.training.rng import set_rng_state
    cfg, _, tmp = tiny
    assert _train(cfg, "--run_name", "ref") == 0
    run = _stopped_run(cfg, tmp, monkeypatch)
    ck = torch.load(run / "last.pt", weights_only=True)
    mid_theta = ck["model"]["theta"].clone()
    set_rng_state(ck["rng"])
    ck["rng"] = {"torch": ck["rng"]["torch"], "numpy": np.random.get_state(),
                 "python": random.getstate()}
    del ck["format"], ck["data"]
    torch.save(ck, run / "last.pt")
    with pytest.raises(ValueError, match="could run code.*upgrade_checkpoint"):
        train_dejavid.main(["--resume", str(run), "--no-progress"])
    upgrade_checkpoint(run / "last.pt")
    assert train_dejavid.main(["--resume", str(run), "--no-progress"]) == 0
    a = torch.load(tmp / "runs" / "ref" / "last.pt", weights_only=True)
    b = torch.load(run / "last.pt", weights_only=True)
    assert not torch.equal(mid_theta, b["model"]["theta"])     # the resumed part trained
    assert torch.equal(a["model"]["mu"], b["model"]["mu"])
    assert torch.equal(a["model"]["theta"], b["model"]["theta"])


def test_file_systems_without_locks_warn_and_run(tmp_path, monkeypatch):
    import errno
    import fcntl

    from dejavid.io import RunLock

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.warns(RuntimeWarning, match="does not support locks"):
        lock = RunLock(tmp_path).acquire()
    lock.release()
    # the feature store's build lock too: it builds (unlocked), with the warning
    videos = good_videos()
    cfg = make_config(write_dataset(tmp_path / "data", videos))
    with pytest.warns(RuntimeWarning, match=r"feature store .*does not support locks"):
        index = index_from_config(cfg, progress=False)
    assert index.store is not None
