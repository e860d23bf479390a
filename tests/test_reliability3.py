"""Issue #25: data that changes under a running job, outputs that would overwrite inputs,
hostile or corrupt stores, checkpoints and imports, resources and signals.

Each test names the issue's item.  Most call the scripts' ``main`` in-process on a tiny
data set; those where the exit code, a signal or stderr matters run a subprocess."""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import train_dejavid
from conftest import ROOT
from dejavid.config.settings import index_from_config
from dejavid.data import store
from dejavid.data.dataset import TSEDataset
from dejavid.training import run as train_mod
from dejavid.training.batching import make_loader
from helpers import (feature_file, good_videos, level_videos, make_config, replacing,
                     seeded_video, write_config_yaml, write_dataset, write_pickle)
from test_reliability2 import TINY, _assert_user_error, _guarded, _script


@pytest.fixture
def tiny(tmp_path):
    """(config path, data paths, tmp folder) of a 3-class data set, 12 train / 12 val videos."""
    paths = write_dataset(tmp_path, level_videos({"train": 4, "val": 4}))
    return write_config_yaml(tmp_path / "tiny.yaml", paths, **TINY), paths, tmp_path


def _train(cfg, *extra) -> int:
    return train_dejavid.main(["--config", str(cfg), "--no-progress", *extra])


def _store_dir(cfg) -> Path:
    paths = {k: cfg[k] for k in ("id2feats", "id2splits", "id2labels", "id2fname")}
    return store.store_dir(cfg["cache_dir"], paths, cfg["store_dtype"])


# --- item 1: a store rebuilt under a running job -----------------------------------------

def test_workers_keep_reading_the_store_they_validated_after_a_rebuild(tmp_path):
    videos = good_videos()
    paths = write_dataset(tmp_path, videos)
    cfg = make_config(paths, standardize=False)
    index = index_from_config(cfg, progress=False)
    ds = TSEDataset(index, "train", progress=False)   # nothing read in this process yet
    # Another process rebuilds the split: one file gets other contents (same shape).
    torch.save(seeded_video(4, 99), paths["id2feats"] / feature_file("a1"))
    rebuilt = index_from_config(cfg, progress=False)
    assert rebuilt.digests != index.digests
    got = list(make_loader(ds, [[n] for n in range(len(ds))], num_workers=1))
    for n, batch in enumerate(got):
        vid = index.ids[int(ds.rows[n])]
        assert torch.equal(batch.x, videos[vid][0]), vid   # the old data, never the new


def test_a_pickled_store_refuses_a_data_file_replaced_since_validation(tmp_path):
    paths = write_dataset(tmp_path, good_videos())
    cfg = make_config(paths, standardize=False)
    index = index_from_config(cfg, progress=False)
    blob = pickle.dumps(TSEDataset(index, "train", progress=False))   # as to a spawned worker
    torch.save(seeded_video(4, 99), paths["id2feats"] / feature_file("a1"))
    index_from_config(cfg, progress=False)
    with pytest.raises(ValueError, match="rebuilt or replaced by another process"):
        pickle.loads(blob)[0]


# --- item 8: corrupt store index or metadata ---------------------------------------------

def _truncate_index(d: Path):
    p = d / "train.index.npz"
    p.write_bytes(p.read_bytes()[:100])


def _list_meta(d: Path):
    (d / "train.meta.json").write_text("[]")


def _lengths_out_of_range(d: Path):
    p = d / "train.index.npz"
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["lengths"] = arrays["lengths"] + 10**6   # rows far past the end of the data
    with open(p, "wb") as fh:
        np.savez(fh, **arrays)


def _zero_lengths(d: Path):
    p = d / "train.index.npz"
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["lengths"] = np.zeros_like(arrays["lengths"])
    with open(p, "wb") as fh:
        np.savez(fh, **arrays)


def _meta_field_missing(d: Path):
    p = d / "train.meta.json"
    meta = json.loads(p.read_text())
    del meta["n_steps"]
    p.write_text(json.dumps(meta))


@pytest.mark.parametrize("damage", [_truncate_index, _list_meta, _lengths_out_of_range,
                                    _zero_lengths, _meta_field_missing])
def test_corrupt_store_index_or_metadata_is_rebuilt(tmp_path, capsys, damage):
    videos = good_videos()
    cfg = make_config(write_dataset(tmp_path, videos))
    index_from_config(cfg, progress=False)
    damage(_store_dir(cfg))
    capsys.readouterr()
    index = index_from_config(cfg, progress=False)
    assert "building split 'train'" in capsys.readouterr().out
    for n, k in enumerate(index.rows("train")):
        assert torch.equal(index.store.video("train", n), videos[index.ids[k]][0])


# --- item 2: a feature file rewritten under a run that reads the files --------------------

def test_feature_file_rewritten_mid_run_stops_before_the_next_checkpoint(tiny, monkeypatch):
    cfg, paths, tmp = tiny
    real = train_mod.train_one_epoch
    victim = paths["id2feats"] / feature_file("val_c0_000")

    def rewrite_in_epoch_2(*a, **kw):
        out = real(*a, **kw)
        if kw["epoch"] == 1:   # same shape, other values, a new modification time
            old = torch.load(victim, weights_only=True)
            torch.save(old + 1.0, victim)
            os.utime(victim, ns=(time.time_ns(), time.time_ns() + 10**9))
        return out

    monkeypatch.setattr(train_mod, "train_one_epoch", rewrite_in_epoch_2)
    with pytest.raises(ValueError, match=r"changed or were deleted during the run "
                                         r"\(e\.g\. 'val_c0_000\.pt'"):
        _train(cfg, "--run_name", "r", "--store", "false", "--in_memory", "false")
    last = torch.load(tmp / "runs" / "r" / "last.pt", weights_only=True)
    assert last["epoch"] == 1   # epoch 2's results (on mixed data) were never saved
    monkeypatch.undo()
    # The checkpoint records the data the run trained on, so a resume sees the change.
    with pytest.raises(ValueError, match="the data changed since the checkpoint"):
        train_dejavid.main(["--resume", str(tmp / "runs" / "r"), "--no-progress"])


def test_store_or_in_memory_runs_ignore_later_file_changes(tiny):
    """They read what they validated (the store, or the split held in RAM), so a file
    changed afterwards cannot mix into the run: no check is due."""
    cfg, paths, tmp = tiny
    for store_on, held in (("true", "false"), ("false", "true")):
        index = index_from_config(make_config(paths, store=store_on == "true"), progress=False)
        ds = TSEDataset(index, "val", in_memory=held == "true", progress=False)
        victim = paths["id2feats"] / feature_file("val_c0_000")
        os.utime(victim, ns=(time.time_ns(), time.time_ns() + 10**9))
        assert ds.changed_files() == []
    index = index_from_config(make_config(paths, store=False), progress=False)
    ds = TSEDataset(index, "val", progress=False)
    os.utime(victim, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert ds.changed_files() == ["val_c0_000.pt"]


# --- item 3: evaluating on the training split ---------------------------------------------

def test_equal_train_and_eval_splits_are_refused_unless_asked_for(tiny, capsys):
    cfg, _, tmp = tiny
    with pytest.raises(ValueError, match="both 'val'.*--allow-eval-on-train"):
        _train(cfg, "--train_split", "val", "--eval_split", "val", "--run_name", "v")
    assert not (tmp / "runs" / "v").exists()
    assert _train(cfg, "--train_split", "val", "--eval_split", "val", "--run_name", "v",
                  "--num_epochs", "1", "--allow-eval-on-train") == 0
    assert "the training split itself" in capsys.readouterr().out
    ckpt = str(tmp / "runs" / "v" / "best.pt")
    with pytest.raises(ValueError, match="both 'val'"):
        train_dejavid.main(["--eval-only", "--checkpoint", ckpt, "--no-progress"])
    assert train_dejavid.main(["--eval-only", "--checkpoint", ckpt, "--no-progress",
                               "--allow-eval-on-train"]) == 0
    assert "the split the checkpoint was trained on" in capsys.readouterr().out


# --- item 4: outputs that would overwrite inputs or managed files --------------------------

def test_predictions_refuse_inputs_and_managed_files(tiny):
    cfg, paths, tmp = tiny
    assert _train(cfg, "--run_name", "a", "--num_epochs", "1") == 0
    best = tmp / "runs" / "a" / "best.pt"
    before = best.read_bytes()
    (tmp / "elsewhere").mkdir()
    (tmp / "elsewhere" / "best.pt").symlink_to(best)
    for target, words in ((best, "is the checkpoint"),
                          (tmp / "elsewhere" / "best.pt", "is the checkpoint"),
                          (paths["id2labels"], "the id2labels map"),
                          (cfg, "the config file"),
                          (paths["id2feats"] / feature_file("val_c1_002"), "a feature file"),
                          (tmp / "cache" / "p.csv", "cache_dir"),
                          (tmp / "runs" / "a" / "metrics.jsonl", "metrics.jsonl of run folder")):
        with pytest.raises(ValueError, match=words):
            train_dejavid.main(["--eval-only", "--checkpoint", str(best), "--config", str(cfg),
                                "--predictions", str(target), "--no-progress"])
    assert best.read_bytes() == before
    for ok in (tmp / "p.csv", tmp / "runs" / "a" / "p.csv", paths["id2feats"] / "p.csv"):
        assert train_dejavid.main(["--eval-only", "--checkpoint", str(best), "--no-progress",
                                   "--predictions", str(ok)]) == 0


# --- item 5: --resume with --output_dir ---------------------------------------------------

def test_resume_refuses_another_output_dir_and_records_where_it_continues(tiny, monkeypatch):
    cfg, _, tmp = tiny
    monkeypatch.setenv("DEJAVID_STOP_AFTER_STEPS", "2")
    assert _train(cfg, "--run_name", "r") == 130
    monkeypatch.delenv("DEJAVID_STOP_AFTER_STEPS")
    run = tmp / "runs" / "r"
    with pytest.raises(ValueError, match="continues in its own folder"):
        train_dejavid.main(["--resume", str(run), "--output_dir", str(tmp / "X"),
                            "--no-progress"])
    assert not (tmp / "X").exists()
    moved = tmp / "moved" / "r2"
    moved.parent.mkdir()
    run.rename(moved)
    assert train_dejavid.main(["--resume", str(moved), "--output_dir", str(moved.parent),
                               "--no-progress"]) == 0
    config = torch.load(moved / "last.pt", weights_only=True)["config"]
    assert (config["output_dir"], config["run_name"]) == (str(moved.parent), "r2")


# --- item 6: model keys on --eval-only ----------------------------------------------------

def test_eval_only_refuses_model_and_training_keys(tiny):
    cfg, _, tmp = tiny
    assert _train(cfg, "--run_name", "a", "--num_epochs", "1") == 0
    best = str(tmp / "runs" / "a" / "best.pt")
    for key, value in (("use_mm", "1"), ("lr", "0.1"), ("num_timesteps", "7"),
                       ("logit_head", "zscore"), ("std_eps", "0.1")):
        with pytest.raises(ValueError, match=f"--{key} cannot apply"):
            train_dejavid.main(["--eval-only", "--checkpoint", best, f"--{key}", value,
                                "--no-progress"])
    assert train_dejavid.main(["--eval-only", "--checkpoint", best, "--eval_batch_size", "2",
                               "--no-progress"]) == 0


# --- item 7: tensor shapes in the original's pickles checked against their storage ---------

class _Reshaped:
    """Pickles as the original's tensor would, but with a declared ``size``/``stride``."""

    def __init__(self, t, size, stride, offset=0):
        self.args = (t.storage(), offset, size, stride)

    def __reduce__(self):
        from collections import OrderedDict
        return (torch._utils._rebuild_tensor_v2, (*self.args, False, OrderedDict()))


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
@pytest.mark.parametrize("size,stride,offset,words", [
    ((1000, 1000, 25), (25000, 25, 1), 0, "storage holding only 6 values"),   # 100 MB asked
    ((1, 2, 3), (6, 3, 1), 1, "reaching element 7"),
    ((1, 2, 3), (6, 3, 2), 0, "reaching element 8"),
    ((1, 2, 3), (6, 3, 1), 2**40, "reaching element"),
])
def test_original_pickle_whose_shape_does_not_match_its_storage_is_refused(
        tmp_path, size, stride, offset, words):
    from dejavid.interop.original import load_original_tensor
    path = tmp_path / "k_feats.pkl"
    with open(path, "wb") as fh:
        pickle.dump(_Reshaped(torch.arange(6.0).reshape(1, 2, 3), size, stride, offset), fh)
    assert path.stat().st_size < 1000
    with pytest.raises(ValueError, match=f"refusing to load .*{words}"):
        load_original_tensor(path, "centroids (k_feats)")
    with open(path, "wb") as fh:   # a view inside its storage is what pickling a view writes
        pickle.dump(_Reshaped(torch.arange(6.0).reshape(1, 2, 3), (1, 2, 2), (6, 3, 1), 1), fh)
    assert torch.equal(load_original_tensor(path), torch.tensor([[[1.0, 2.0], [4.0, 5.0]]]))


# --- item 9: a file that is no checkpoint, against a legacy checkpoint ----------------------

class _RunsCode:
    def __reduce__(self):
        return (os.system, ("true",))


def test_non_checkpoint_files_are_told_from_legacy_checkpoints(tmp_path):
    import zipfile

    from dejavid.training.checkpoint import load_checkpoint
    text, noise, empty, zipped = (tmp_path / n for n in ("t.pt", "r.pt", "e.pt", "z.pt"))
    text.write_text("epoch: 3\nnot a checkpoint\n")
    noise.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    empty.write_bytes(b"")
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("notes.txt", "hello")
    for path in (text, noise, empty, zipped):
        with pytest.raises(ValueError) as info:
            load_checkpoint(path)
        msg = str(info.value)
        assert "is not a dejavid checkpoint" in msg and "upgrade_checkpoint" not in msg, msg
    crafted = tmp_path / "c.pt"
    torch.save({"model": {}, "config": {}, "x": _RunsCode()}, crafted)
    with pytest.raises(ValueError) as info:
        load_checkpoint(crafted)
    msg = str(info.value)
    assert "could run code" in msg and "posix.system" in msg and "upgrade_checkpoint" not in msg
    legacy = tmp_path / "l.pt"
    torch.save({"model": {}, "config": {}, "rng": {"numpy": np.random.get_state()}}, legacy)
    with pytest.raises(ValueError, match="could run code.*earlier dejavid.*upgrade_checkpoint"):
        load_checkpoint(legacy)


# --- item 10: the same rules and messages on every read path --------------------------------

def _problems(paths, **cfg) -> str:
    with pytest.raises(ValueError) as info:
        index_from_config(make_config(paths, **cfg), progress=False)
    return str(info.value)


def test_huge_labels_and_nul_file_names_give_the_same_message_with_and_without_store(tmp_path):
    videos = good_videos()
    paths = write_dataset(tmp_path, videos)
    labels = {v: lab for v, (_, lab, _) in videos.items()}
    write_pickle(paths["id2labels"], {**labels, "a1": 2**63, "a3": 2**63})
    with_store, without = _problems(paths), _problems(paths, store=False)
    assert with_store == without
    assert "video 'a1'" in with_store and "outside the 64-bit integer range" in with_store
    write_pickle(paths["id2labels"], labels)
    fnames = {v: feature_file(v) for v in videos}
    write_pickle(paths["id2fname"], {**fnames, "a2": "a\x002.pt"})
    with_store, without = _problems(paths), _problems(paths, store=False)
    assert with_store == without and "video 'a2'" in with_store and "NUL" in with_store


def test_undecodable_file_names_work_with_the_store(tmp_path, capsys):
    videos = good_videos()
    paths = write_dataset(tmp_path, videos)
    odd = os.fsdecode(b"caf\xe9.pt")            # as os.listdir returns a Latin-1 name
    os.rename(paths["id2feats"] / feature_file("a1"), paths["id2feats"] / odd)
    write_pickle(paths["id2fname"], {**{v: feature_file(v) for v in videos}, "a1": odd})
    for _ in range(2):                          # built, then reopened
        index = index_from_config(make_config(paths), progress=False)
        plain = index_from_config(make_config(paths, store=False), progress=False)
        assert index.digests == plain.digests
    assert capsys.readouterr().out.count("building split 'train'") == 1


# --- item 11: a binary config file -------------------------------------------------------

def test_binary_config_file_is_one_message_naming_it(tmp_path):
    cfg = tmp_path / "model.yaml"
    cfg.write_bytes(bytes(range(128, 256)) * 4)
    rc, _, err = _script("--config", cfg)
    _assert_user_error(rc, err, str(cfg), "not a text file")


# --- item 12: feature tensors saved with requires_grad=True --------------------------------

def test_features_saved_with_requires_grad_are_read(tmp_path):
    videos = {k: (x.clone().requires_grad_(True), lab, s)
              for k, (x, lab, s) in good_videos().items()}
    paths = write_dataset(tmp_path, videos)
    for store_on in (True, False):
        index = index_from_config(make_config(paths, store=store_on, standardize=False),
                                  progress=False)
        ds = TSEDataset(index, "train", progress=False)
        for n in range(len(ds)):
            x, _, k = ds[n]
            assert torch.equal(x, videos[index.ids[k]][0].detach()) and not x.requires_grad


# --- item 18: SIGTERM at every stage as Ctrl-C ---------------------------------------------

@pytest.mark.parametrize("where", ["dejavid.training.run.load_or_compute_centroids",
                                   "dejavid.config.settings.index_from_config"])
def test_sigterm_during_data_check_or_centroids_exits_143_in_one_line(tiny, where):
    cfg, _, tmp = tiny
    patch = replacing(where, "os.kill(os.getpid(), signal.SIGTERM)", "time.sleep(30)",
                      imports="os, signal, time")
    rc, _, err = _guarded(patch, "--config", cfg, "--run_name", "c", "--no-progress")
    assert rc == 143, err
    assert "Traceback" not in err and err.strip().splitlines() == ["interrupted (SIGTERM)"]
    assert not (tmp / "runs" / "c").exists()


# --- item 14 (signals part): a run in a thread other than the main one ----------------------

def test_stop_request_outside_the_main_thread_installs_no_handler():
    import threading

    from dejavid.training.signals import StopRequest
    before = signal.getsignal(signal.SIGTERM)
    errors = []

    def body():
        try:
            with StopRequest(env={}) as stop:
                assert stop.requested is None
        except Exception as exc:   # "signal only works in main thread" before the fix
            errors.append(exc)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert errors == [] and signal.getsignal(signal.SIGTERM) is before


# --- item 19: numba with nowhere to write its cache -----------------------------------------

_NO_CACHE_PROBE = """
import os, sys, tempfile, warnings
import numba.core.caching as caching
allowed = sys.argv[1]
real = caching._CacheLocator.ensure_cache_path
def ensure(self):   # as for a read-only install and HOME: only `allowed` is writable
    path = self.get_cache_path()
    if not (allowed and path.startswith(allowed)):
        raise PermissionError(13, "Permission denied", path)
    return real(self)
caching._CacheLocator.ensure_cache_path = ensure
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    import torch
    from dejavid.alignment import numba as nb
warned = [w for w in seen if "numba cannot cache" in str(w.message)]
print("CACHE", nb._CACHE, "WARNINGS", len(warned))
if sys.argv[2] == "run":
    x = torch.randn(5, 3)
    d = nb.local_cost_numba(x, torch.tensor([0, 5]), torch.randn(2, 4, 3), torch.zeros(2, 4, 3))
    print("FINITE", bool(torch.isfinite(d).all()))
"""


@pytest.mark.parametrize("writable,expect", [("tmp", "CACHE True WARNINGS 1"),
                                             ("", "CACHE False WARNINGS 1")])
def test_numba_without_a_writable_cache_falls_back_with_one_warning(tmp_path, writable, expect):
    (tmp_path / "tmp").mkdir()
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"), HOME=str(tmp_path / "home"))
    env.pop("NUMBA_CACHE_DIR", None)
    res = subprocess.run([sys.executable, "-c", _NO_CACHE_PROBE,
                          str(tmp_path / "tmp") if writable else "",
                          "run" if not writable else "-"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert expect in res.stdout, res.stdout
    if not writable:
        assert "FINITE True" in res.stdout
    else:
        assert (tmp_path / "tmp" / f"dejavid-numba-cache-{os.getuid()}").is_dir()


# --- item 20: prepare_demo.py with a data set it cannot read, or --out a file ---------------

def _prepare(*argv):
    res = subprocess.run([sys.executable, str(ROOT / "prepare_demo.py"), *map(str, argv)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    return res.returncode, res.stderr


def test_prepare_demo_refuses_unbundled_data_sets_and_a_file_as_out(tmp_path):
    rc, err = _prepare("--dataset", "NoSuchSet", "--out", tmp_path / "d")
    _assert_user_error(rc, err, "'NoSuchSet' is not bundled", "JapaneseVowels")
    taken = tmp_path / "file"
    taken.write_text("x")
    rc, err = _prepare("--out", taken)
    _assert_user_error(rc, err, str(taken), "not a folder")
    assert taken.read_text() == "x"


# --- item 21: one extreme-length video does not set the temperature -----------------------

def _tau(capsys, tmp, videos, name) -> float:
    paths = write_dataset(tmp / name, videos)
    # (standardize off: with it, the long video's 20 000 steps also set the per-feature
    # statistics, which rescales every distance; this is about the calibration alone)
    cfg = write_config_yaml(tmp / f"{name}.yaml", paths,
                            **{**TINY, "num_epochs": 1, "standardize": False})
    assert _train(cfg, "--run_name", name) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if "tau =" in ln][0]
    return float(line.split("tau = ")[1].split()[0])


def test_one_extreme_length_video_does_not_set_the_temperature(tmp_path, capsys):
    videos = level_videos({"train": 4, "val": 4}, lengths=(3, 8))
    usual = _tau(capsys, tmp_path, videos, "usual")
    g = torch.Generator().manual_seed(5)
    long = (1.0 + 0.1 * torch.randn(20_000, 3, generator=g), 1, "train")
    extreme = _tau(capsys, tmp_path, {**videos, "train_long": long}, "extreme")
    assert 0.5 < extreme / usual < 2.0, (usual, extreme)


def test_calibration_without_outliers_is_the_plain_spread():
    from dejavid.model.layer import TemperatureHead
    dist = 1000 + 300 * torch.rand(64, 5)
    head = TemperatureHead()
    head.calibrate(dist)
    plain = (dist - dist.mean(1, keepdim=True)).double().pow(2).mean().sqrt()
    assert head.log_temperature.item() == pytest.approx(float(plain.log()), rel=1e-6)
    head.calibrate(torch.cat([dist, 10**4 * dist[:1]]))   # one sample far out: left out
    assert head.log_temperature.item() == pytest.approx(float(plain.log()), rel=1e-6)


# --- item 17: a read-only cache_dir that holds everything needed ---------------------------

def _read_only(monkeypatch, folder: Path):
    """``folder`` read-only, also for root (who ignores permissions): test_store's patches of
    open/mkdir, and os.access answering as for a normal user."""
    from test_store import _deny_writes_under
    _deny_writes_under(monkeypatch, folder)
    real_access = os.access

    def access(path, mode, *a, **k):
        if str(Path(path).resolve()).startswith(str(folder.resolve())) and mode & os.W_OK:
            return False
        return real_access(path, mode, *a, **k)

    monkeypatch.setattr(os, "access", access)


def test_read_only_cache_holding_store_and_centroids_is_used(tiny, monkeypatch, capsys):
    cfg, _, tmp = tiny
    assert _train(cfg, "--run_name", "a", "--num_epochs", "1") == 0
    cache = tmp / "cache"
    _read_only(monkeypatch, cache)
    try:
        capsys.readouterr()
        assert _train(cfg, "--run_name", "b", "--num_epochs", "1") == 0
        out = capsys.readouterr().out
        assert "is read-only" in out and "reusing cached centroids" in out
        # Centroids it lacks (other K): refused before they are computed, naming the folder.
        with pytest.raises(ValueError, match=r"no cached centroids .*cache_dir .*not writable"):
            _train(cfg, "--run_name", "c", "--num_timesteps", "3")
        assert "computing centroids" not in capsys.readouterr().out
        assert not (tmp / "runs" / "c").exists()
    finally:
        cache.chmod(0o755)


# --- item 16: resources bounded with a message ----------------------------------------------

def test_too_many_workers_are_bounded_with_a_message(tiny, capsys):
    from dejavid.training.batching import worker_limit
    cfg, _, tmp = tiny
    assert _train(cfg, "--run_name", "w", "--num_epochs", "1", "--num_workers", "100000") == 0
    limit = worker_limit()
    assert 1 <= limit <= len(os.sched_getaffinity(0))
    out = capsys.readouterr().out
    assert f"num_workers 100000 is more than this machine can run ({limit}" in out
    config = torch.load(tmp / "runs" / "w" / "last.pt", weights_only=True)["config"]
    assert config["num_workers"] == limit   # the checkpoint records what ran


@pytest.mark.parametrize("K", [3_000_000, 10**11])
def test_centroid_length_beyond_memory_is_refused_before_allocating(tiny, K):
    cfg, _, tmp = tiny
    rc, _, err = _script("--config", cfg, "--run_name", "k", "--num_timesteps", K,
                         "--no-progress")
    _assert_user_error(rc, err, f"num_timesteps K = {K} needs at least", "GiB")
    assert not (tmp / "runs" / "k").exists()


def test_import_original_out_refuses_inputs_and_managed_folders(tiny):
    import import_original
    cfg, paths, tmp = tiny
    kf, lw = tmp / "k_feats.pkl", tmp / "w.pt"
    kf.write_bytes(b"not read")
    lw.write_bytes(b"not read")
    for out, words in ((kf, "is the --k-feats file"), (lw, "is the --log-weights file"),
                       (tmp / "cache" / "o.pt", "cache_dir")):
        with pytest.raises(ValueError, match=words):
            import_original.main(["--config", str(cfg), "--no-progress", "--k-feats", str(kf),
                                  "--log-weights", str(lw), "--out", str(out)])
    assert kf.read_bytes() == b"not read" and lw.read_bytes() == b"not read"
