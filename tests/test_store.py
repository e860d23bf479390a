"""The packed feature store (dejavid/data/store.py, issue #17): contents, when it is rebuilt,
interrupted and concurrent builds, disk errors, precision, and bitwise-equal training."""
from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import train_dejavid
from dejavid.data import dataset as data_mod
from dejavid.data import store
from dejavid.data.dataset import DataValidationError, TSEDataset, load_index
from dejavid.config.settings import index_from_config
from helpers import (DICT_FILE, feature_file, good_videos, level_videos, make_config, read_pickle,
                     write_config_yaml, write_dataset, write_pickle)
from helpers import seeded_video as _video

ROOT = Path(__file__).resolve().parents[1]
F = 3




def _store_dir(cfg) -> Path:
    paths = {k: cfg[k] for k in ("id2feats", "id2splits", "id2labels", "id2fname")}
    return store.store_dir(cfg["cache_dir"], paths, cfg["store_dtype"])


def _assert_matches(index, videos) -> None:
    """Every video read through the store equals its source tensor bit for bit."""
    for split in ("train", "val", "test"):
        if len(index.rows(split)) == 0:
            continue
        ds = TSEDataset(index, split, progress=False)
        for n in range(len(ds)):
            x, _, k = ds[n]
            assert torch.equal(x, videos[index.ids[k]][0].float()), index.ids[k]


def _no_file_reads(monkeypatch):
    def refuse(path):
        raise AssertionError(f"a feature file was opened: {path}")
    monkeypatch.setattr(data_mod, "load_tensor_file", refuse)


# ------------------------------------------------------------------------- contents

@pytest.mark.parametrize("layout", ["per_file", "dict"])
def test_memmap_slices_equal_source_tensors(tmp_path, layout):
    videos = good_videos()
    cfg = make_config(write_dataset(tmp_path, videos, layout=layout))
    index = index_from_config(cfg, progress=False)
    assert index.store is not None
    _assert_matches(index, videos)
    # The split's array is one contiguous memory map holding every step once.
    train = index.store.splits["train"]
    mm = index.store.array("train")
    assert isinstance(mm, np.memmap) and mm.shape == (4 + 2 + 5 + 1, F)
    assert sorted(train.lengths.tolist()) == [1, 2, 4, 5]


def test_library_load_index_uses_the_store_only_when_asked(tmp_path):
    videos = good_videos()
    paths = write_dataset(tmp_path, videos)
    args = [paths[k] for k in ("id2feats", "id2splits", "id2labels", "id2fname")]
    assert load_index(*args, progress=False).store is None
    assert not (tmp_path / "cache_lib").exists()
    index = load_index(*args, progress=False, store=True, cache_dir=tmp_path / "cache_lib",
                       store_dtype="float16")
    assert index.store.dtype == "float16" and list((tmp_path / "cache_lib").glob("store_*"))


def test_index_with_store_equals_index_without(tmp_path):
    cfg = make_config(write_dataset(tmp_path, good_videos()))
    plain = index_from_config({**cfg, "store": False}, progress=False)
    stored = index_from_config(cfg, progress=False)
    assert stored.store is not None and plain.store is None
    for name in ("ids", "files", "splits", "label_values", "feature_size", "digests"):
        assert getattr(stored, name) == getattr(plain, name), name
    assert np.array_equal(stored.lengths, plain.lengths)
    assert np.array_equal(stored.labels, plain.labels)
    for split in ("train", "val", "test"):  # the centroid cache key does not change
        assert stored.fingerprint(split) == plain.fingerprint(split)


def test_second_start_opens_no_feature_file(tmp_path, monkeypatch):
    videos = good_videos()
    cfg = make_config(write_dataset(tmp_path, videos))
    index_from_config(cfg, progress=False)
    _no_file_reads(monkeypatch)
    index = index_from_config(cfg, progress=False)
    _assert_matches(index, videos)


def test_workers_get_the_store_without_its_data(tmp_path):
    videos = good_videos()
    index = index_from_config(make_config(write_dataset(tmp_path, videos)), progress=False)
    ds = TSEDataset(index, "train", progress=False)
    ds[0]  # opens the memory map in this process
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000
    again = pickle.loads(blob)
    for n in range(len(ds)):
        assert torch.equal(again[n][0], ds[n][0])
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2,
                                         collate_fn=data_mod.collate_packed)
    seen = torch.cat([b.x for b in loader])
    assert torch.equal(seen, torch.cat([ds[n][0] for n in range(len(ds))]))


def test_in_memory_still_works_with_store(tmp_path):
    videos = good_videos()
    cfg = make_config(write_dataset(tmp_path, videos))
    index = index_from_config(cfg, progress=False)
    ds = TSEDataset(index, "train", in_memory=True, progress=False)
    for n in range(len(ds)):
        x, _, k = ds[n]
        assert torch.equal(x, videos[index.ids[k]][0])


# ------------------------------------------------------------------------- staleness

def _meta_mtime(cfg, split) -> int:
    return (_store_dir(cfg) / f"{split}.meta.json").stat().st_mtime_ns


@pytest.mark.parametrize("change", ["changed", "added", "removed"])
def test_changed_added_or_removed_file_rebuilds_its_split(tmp_path, capsys, change):
    videos = good_videos()
    paths = write_dataset(tmp_path, videos)
    cfg = make_config(paths)
    index_from_config(cfg, progress=False)
    val_before = _meta_mtime(cfg, "val")
    capsys.readouterr()
    if change == "changed":
        videos["a3"] = (videos["a3"][0] + 1.0, 7, "train")
        torch.save(videos["a3"][0], paths["id2feats"] / feature_file("a3"))
    elif change == "added":
        videos["a5"] = (_video(7, 9), 10, "train")
        torch.save(videos["a5"][0], paths["id2feats"] / feature_file("a5"))
    else:
        del videos["a4"]
        (paths["id2feats"] / feature_file("a4")).unlink()
    if change != "changed":
        for key, col in (("id2splits", 2), ("id2labels", 1)):
            write_pickle(paths[key], {v: t[col] for v, t in videos.items()})
        write_pickle(paths["id2fname"], {v: feature_file(v) for v in videos})
    index = index_from_config(cfg, progress=False)
    out = capsys.readouterr().out
    assert "building split 'train'" in out, out
    if change == "changed":
        assert "1 file(s) changed (e.g. 'a3.pt')" in out, out
    else:
        assert "video ids, labels or file names changed" in out, out
    assert "building split 'val'" not in out and _meta_mtime(cfg, "val") == val_before
    _assert_matches(index, videos)


def test_missing_file_after_build_is_reported(tmp_path):
    paths = write_dataset(tmp_path, good_videos())
    cfg = make_config(paths)
    index_from_config(cfg, progress=False)
    (paths["id2feats"] / feature_file("b1")).unlink()
    with pytest.raises(DataValidationError) as info:
        index_from_config(cfg, progress=False)
    assert "video 'b1' (file 'b1.pt'): file not found" in str(info.value)


def test_other_format_version_is_rebuilt_with_a_message(tmp_path, capsys):
    videos = good_videos()
    cfg = make_config(write_dataset(tmp_path, videos))
    index_from_config(cfg, progress=False)
    meta_path = _store_dir(cfg) / "train.meta.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = store.FORMAT_VERSION + 1
    meta_path.write_text(json.dumps(meta))
    capsys.readouterr()
    index = index_from_config(cfg, progress=False)
    assert f"store format version {store.FORMAT_VERSION + 1}" in capsys.readouterr().out
    assert json.loads(meta_path.read_text())["format_version"] == store.FORMAT_VERSION
    _assert_matches(index, videos)


def test_truncated_data_file_is_rebuilt(tmp_path, capsys):
    videos = good_videos()
    cfg = make_config(write_dataset(tmp_path, videos))
    index_from_config(cfg, progress=False)
    data = _store_dir(cfg) / "train.data"
    data.write_bytes(data.read_bytes()[:-4])
    capsys.readouterr()
    index = index_from_config(cfg, progress=False)
    assert "its data file holds" in capsys.readouterr().out
    _assert_matches(index, videos)


def test_verify_data_finds_a_change_that_kept_size_and_mtime(tmp_path, capsys):
    videos = good_videos()
    paths = write_dataset(tmp_path, videos)
    cfg = make_config(paths)
    index_from_config(cfg, progress=False)
    f = paths["id2feats"] / feature_file("a1")
    st = f.stat()
    videos["a1"] = (videos["a1"][0] * 2, 10, "train")   # same shape: same file size
    torch.save(videos["a1"][0], f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_size == st.st_size
    stale = index_from_config(cfg, progress=False)          # os.stat cannot see this change
    a1 = stale.ids.index("a1")
    assert not torch.equal(stale.store.video("train", int(np.where(stale.rows("train") == a1)[0][0])),
                           videos["a1"][0])
    capsys.readouterr()
    index = index_from_config(cfg, progress=False, verify=True)
    out = capsys.readouterr().out
    assert "--verify-data: 1 video(s) differ" in out and "video 'a1' (file 'a1.pt')" in out, out
    _assert_matches(index, videos)
    capsys.readouterr()
    index_from_config(cfg, progress=False, verify=True)     # now current: nothing rebuilt
    assert "building split" not in capsys.readouterr().out


# ------------------------------------------------------------------------- bad input

def _bad_cases():
    return {
        "wrong_rank": ("a2", torch.zeros(3)),
        "empty": ("a2", torch.zeros(0, F)),
        "not_tensor": ("b1", [1, 2, 3]),
        "feature_size": ("a3", torch.zeros(5, F + 1)),
        "nan": ("b2", torch.full((2, F), float("nan"))),
        "integer": ("a1", torch.zeros(2, F, dtype=torch.int32)),
    }


def _messages(tmp_path, videos, **cfg):
    with pytest.raises(DataValidationError) as info:
        index_from_config(make_config(write_dataset(tmp_path, videos), **cfg), progress=False)
    return info.value


@pytest.mark.parametrize("case", sorted(_bad_cases()))
def test_bad_input_reported_as_without_store(tmp_path, case):
    vid, bad = _bad_cases()[case]
    videos = good_videos()
    videos[vid] = (bad, videos[vid][1], videos[vid][2])
    plain = _messages(tmp_path / "plain", videos, store=False)
    stored = _messages(tmp_path / "store", videos)
    assert sorted(stored.problems) == sorted(plain.problems)
    assert f"video '{vid}' (file '{vid}.pt')" in str(stored)
    # Reported again on the next start (from the build record), and never used.
    again = _messages(tmp_path / "store", videos)
    assert sorted(again.problems) == sorted(plain.problems)


@pytest.mark.parametrize("damage", ["missing", "unreadable", "dict_key", "config_feature_size"])
def test_file_level_errors_reported_as_without_store(tmp_path, damage):
    videos = good_videos()
    layout = {v: "dict" if v in ("a1", "a2") else "per_file" for v in videos}
    cfg_over = {"feature_size": F + 2} if damage == "config_feature_size" else {}
    results = []
    for where, use_store in (("plain", False), ("store", True)):
        paths = write_dataset(tmp_path / where, videos, layout=layout)
        if damage == "missing":
            (paths["id2feats"] / feature_file("b1")).unlink()
        elif damage == "unreadable":
            (paths["id2feats"] / feature_file("a3")).write_bytes(b"not a torch file")
        elif damage == "dict_key":
            torch.save({"a1": videos["a1"][0]}, paths["id2feats"] / DICT_FILE)
        with pytest.raises(DataValidationError) as info:
            index_from_config(make_config(paths, store=use_store, **cfg_over), progress=False)
        results.append(sorted(m.replace(str(tmp_path / where), "<data>")
                              for m in info.value.problems))
    assert results[0] == results[1]
    assert all("video '" in p and "(file '" in p for p in results[1])


def test_config_feature_size_change_is_rechecked(tmp_path):
    cfg = make_config(write_dataset(tmp_path, good_videos()))
    index_from_config(cfg, progress=False)
    with pytest.raises(DataValidationError) as info:
        index_from_config({**cfg, "feature_size": F + 1}, progress=False)
    assert f"feature size {F} differs from {F + 1} (config feature_size)" in str(info.value)
    assert index_from_config({**cfg, "feature_size": F}, progress=False).feature_size == F


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_source_warns_on_every_start(tmp_path, dtype):
    videos = good_videos()
    videos["a1"] = (videos["a1"][0].to(dtype), 10, "train")
    cfg = make_config(write_dataset(tmp_path, videos))
    for _ in range(2):
        with pytest.warns(RuntimeWarning, match="1 video"):
            index = index_from_config(cfg, progress=False)
    _assert_matches(index, videos)


# ------------------------------------------------------------------------- precision

@pytest.mark.parametrize("dtype,rel", [("float16", 2.0 ** -11), ("bfloat16", 2.0 ** -8)])
def test_half_store_error_bound(tmp_path, capsys, dtype, rel):
    videos = {f"v{n}": (_video(20, n, 16, scale=10.0 ** (n % 5 - 2)), n % 2, "train" if n < 6 else "val")
              for n in range(10)}
    cfg = make_config(write_dataset(tmp_path, videos), store_dtype=dtype)
    index = index_from_config(cfg, progress=False)
    out = capsys.readouterr().out
    worst = 0.0
    for split in ("train", "val"):
        ds = TSEDataset(index, split, progress=False)
        for n in range(len(ds)):
            x, _, k = ds[n]
            src = videos[index.ids[k]][0]
            assert x.dtype == torch.float32
            err = (x - src).abs()
            # round to nearest: relative error <= 2^-11 (float16) / 2^-8 (bfloat16);
            # float16 subnormals below 2^-14 have absolute spacing 2^-24.
            bound = src.abs() * rel + 2.0 ** -25
            print(dtype, "max err / bound", float((err / bound).max()))
            assert bool((err <= bound).all())
            worst = max(worst, float(err.max()))
    assert worst > 0
    recorded = max(st.meta["max_abs_error"] for st in index.store.splits.values())
    assert recorded == pytest.approx(worst, rel=1e-6)
    assert f"largest conversion error {recorded:.3g}" in out, out
    # A half-precision store trains on other values: its centroid cache key differs.
    plain = index_from_config({**cfg, "store": False}, progress=False)
    assert index.fingerprint("train") != plain.fingerprint("train")


def test_float16_overflow_is_an_error(tmp_path):
    videos = good_videos()
    videos["a3"] = (torch.full((2, F), 1e5), 7, "train")
    with pytest.raises(DataValidationError) as info:
        index_from_config(make_config(write_dataset(tmp_path, videos), store_dtype="float16"),
                   progress=False)
    msg = str(info.value)
    assert "video 'a3' (file 'a3.pt')" in msg and "store_dtype bfloat16 or float32" in msg


# ------------------------------------------------------------------------- device copy

def test_store_on_device_cpu_and_fallback(tmp_path):
    videos = good_videos()
    index = index_from_config(make_config(write_dataset(tmp_path, videos), store_dtype="bfloat16"),
                       progress=False)
    ds = TSEDataset(index, "train", progress=False, device="cpu")
    assert ds.on_device
    ref = TSEDataset(index, "test", progress=False)
    for n in range(len(ds)):
        assert torch.equal(ds[n][0], index.store.video("train", n))
    with pytest.raises(ValueError, match="num_workers: 0"):
        pickle.dumps(ds)
    logs = []
    assert not index.store.to_device("test", "cpu", log=logs.append, free_bytes=lambda d: 10)
    assert "needs" in logs[0] and "reading it from the memory-mapped store" in logs[0]
    assert torch.equal(ref[0][0], index.store.video("test", 0))


# ------------------------------------------------------------------------- disk errors

def test_full_disk_gives_a_clear_error_and_no_usable_store(tmp_path, monkeypatch):
    videos = good_videos()
    cfg = make_config(write_dataset(tmp_path, videos))
    real_write, calls = store._write, []

    def write_then_fill(fh, arr):
        calls.append(1)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(fh, arr)

    monkeypatch.setattr(store, "_write", write_then_fill)
    with pytest.raises(ValueError) as info:
        index_from_config(cfg, progress=False)
    msg = str(info.value)
    assert "no space left on the device" in msg and "store: false" in msg, msg
    assert "GiB" in msg and str(_store_dir(cfg)) in msg
    assert not list(_store_dir(cfg).glob("*.meta.json"))
    monkeypatch.setattr(store, "_write", real_write)
    _assert_matches(index_from_config(cfg, progress=False), videos)


def _deny_writes_under(monkeypatch, folder: Path):
    """A read-only folder: chmod for a normal user; root ignores permissions, so patch open."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    if os.geteuid() == 0:
        real_open = open

        def deny(path, mode="r", *a, **k):
            if str(path).startswith(str(folder)) and any(c in mode for c in "wa+"):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, mode, *a, **k)

        real_mkdir = Path.mkdir

        def deny_mkdir(self, *a, **k):
            if str(self).startswith(str(folder)) and not self.exists():
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            return real_mkdir(self, *a, **k)

        monkeypatch.setattr("builtins.open", deny)
        monkeypatch.setattr(Path, "mkdir", deny_mkdir)


def test_read_only_cache_dir(tmp_path, monkeypatch):
    videos = good_videos()
    paths = write_dataset(tmp_path, videos)
    ro = tmp_path / "ro_cache"
    _deny_writes_under(monkeypatch, ro)
    try:
        with pytest.raises(ValueError) as info:
            index_from_config(make_config(paths, cache_dir=str(ro)), progress=False)
        msg = str(info.value)
        assert "cannot write the feature store" in msg and "store: false" in msg, msg
        assert index_from_config(make_config(paths, cache_dir=str(ro), store=False),
                          progress=False).store is None
    finally:
        ro.chmod(0o755)
    # A complete, current store in a folder that has since become read-only is still used.
    monkeypatch.undo()
    built = tmp_path / "built_cache"
    index_from_config(make_config(paths, cache_dir=str(built)), progress=False)
    _deny_writes_under(monkeypatch, built)
    try:
        _assert_matches(index_from_config(make_config(paths, cache_dir=str(built)), progress=False), videos)
    finally:
        built.chmod(0o755)


# ------------------------------------------------------------------------- processes

_BUILD_SCRIPT = textwrap.dedent("""
    import os, signal, sys, time, yaml
    from dejavid.data import store
    from dejavid.config.files import load_config
    from dejavid.config.settings import index_from_config
    store.CHUNK_VIDEOS = 3
    mode, cfg_path = sys.argv[1], sys.argv[2]
    real_write, calls = store._write, []
    def write(fh, arr):
        calls.append(1)
        if mode == "kill" and len(calls) == 8:   # mid-build, after two recorded chunks
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "slow":
            time.sleep(0.1)
        real_write(fh, arr)
    store._write = write
    reads = []
    import dejavid.data.dataset as d
    real_load = d.load_tensor_file
    d.load_tensor_file = lambda p: (reads.append(p), real_load(p))[1]
    index = index_from_config(load_config(cfg_path), progress=False)
    print("READS", len(reads), "VIDEOS", len(index.ids))
""")


def _run_builder(mode, cfg_path, tmp_path):
    script = tmp_path / "build.py"
    script.write_text(_BUILD_SCRIPT)
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}")
    return subprocess.Popen([sys.executable, str(script), mode, str(cfg_path)], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _many_videos(n=14):
    return {f"t{k:02d}": (_video(2 + k % 5, k), k % 2, "train") for k in range(n)} | \
        {f"v{k:02d}": (_video(3, 100 + k), k % 2, "val") for k in range(3)}


def test_killed_build_is_never_used_and_the_next_run_completes_it(tmp_path, capsys):
    videos = _many_videos()
    paths = write_dataset(tmp_path, videos)
    cfg_path = write_config_yaml(tmp_path / "cfg.yaml", paths)
    proc = _run_builder("kill", cfg_path, tmp_path)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, out
    cfg = make_config(paths)
    d = _store_dir(cfg)
    assert not (d / "train.meta.json").exists() and (d / "train.progress.jsonl").exists()
    assert len((d / "train.progress.jsonl").read_text().splitlines()) == 3  # header + 2 chunks
    reads = []
    real_load = data_mod.load_tensor_file
    data_mod.load_tensor_file = lambda p: (reads.append(p), real_load(p))[1]
    try:
        capsys.readouterr()
        index = index_from_config(cfg, progress=False)
    finally:
        data_mod.load_tensor_file = real_load
    log = capsys.readouterr().out
    assert "build was interrupted" in log and "continuing split 'train' at video 6/14" in log, log
    assert len(reads) == 14 - 6 + 3   # the rest of train, and val
    _assert_matches(index, videos)
    assert not (d / "train.progress.jsonl").exists()


def test_two_concurrent_first_runs_build_once(tmp_path):
    videos = _many_videos(10)
    paths = write_dataset(tmp_path, videos)
    cfg_path = write_config_yaml(tmp_path / "cfg.yaml", paths)
    procs = [_run_builder("slow", cfg_path, tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    reads = sorted(int(o.split("READS")[1].split()[0]) for o in outs)
    print(outs)
    assert reads == [0, 13], outs      # one built (13 videos read), the other read nothing
    assert sum(o.count("building split 'train'") for o in outs) == 1
    _assert_matches(index_from_config(make_config(paths), progress=False), videos)


# ------------------------------------------------------------------------- training

def test_training_with_store_is_bitwise_the_file_loader(tmp_path):
    videos = level_videos({"train": 12, "val": 4}, num_classes=3, seed=3)
    paths = write_dataset(tmp_path, videos)
    weights = {}
    for use_store in ("false", "true"):
        cfg_path = write_config_yaml(tmp_path / f"cfg_{use_store}.yaml", paths,
                                     cache_dir=str(tmp_path / f"cache_{use_store}"),
                                     output_dir=str(tmp_path / "runs"))
        argv = ["--config", str(cfg_path), "--store", use_store, "--run_name", use_store,
                "--num_timesteps", "4", "--num_epochs", "3", "--batch_size", "8",
                "--sample_size_per_class", "6", "--dba_max_iter", "5", "--w_one_init", "false",
                "--no-progress"]
        assert train_dejavid.main(argv) == 0
        ck = torch.load(tmp_path / "runs" / use_store / "last.pt", weights_only=False)
        weights[use_store] = (ck["model"]["mu"], ck["model"]["theta"], ck["history"])
    (mu0, th0, h0), (mu1, th1, h1) = weights["false"], weights["true"]
    print("max |dmu|", float((mu0 - mu1).abs().max()), "max |dtheta|", float((th0 - th1).abs().max()))
    assert torch.equal(mu0, mu1) and torch.equal(th0, th1)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in h0]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in h1]
    assert (tmp_path / "cache_true").is_dir() and list((tmp_path / "cache_true").glob("store_*"))
    assert not list((tmp_path / "cache_false").glob("store_*"))


def test_build_store_step_builds_only_the_store(tmp_path, capsys):
    import compute_centroids
    videos = good_videos()
    paths = write_dataset(tmp_path, videos)
    cfg_path = write_config_yaml(tmp_path / "cfg.yaml", paths)
    assert compute_centroids.main(["--config", str(cfg_path), "--build-store", "--no-progress"]) == 0
    assert "is complete (6 videos, float32" in capsys.readouterr().out
    cache = tmp_path / "cache"
    assert len(list(cache.glob("store_*/*.meta.json"))) == 3 and not list(cache.glob("centroids_*"))
    with pytest.raises(ValueError, match="--build-store with store: false"):
        compute_centroids.main(["--config", str(cfg_path), "--build-store", "--store", "false"])


def test_standardisation_statistics_are_bitwise_those_without_the_store(tmp_path):
    """The store computes the training statistics from its memory map in the order the file
    check visits the videos, so standardised runs stay bitwise equal with and without it."""
    g = torch.Generator().manual_seed(5)
    videos = {f"v{n}": (torch.randn(3 + n % 4, 6, generator=g) * (10 ** (n % 3)), n % 2,
                        "train" if n < 9 else "val") for n in range(12)}
    paths = write_dataset(tmp_path, videos)
    with_store = index_from_config(make_config(paths, store=True, standardize=True),
                                   progress=False)
    without = index_from_config(make_config(paths, store=False, standardize=True),
                                progress=False)
    assert with_store.store is not None and without.store is None
    for key in ("mean", "std"):
        assert torch.equal(with_store.feature_stats[key], without.feature_stats[key]), key
    a = TSEDataset(with_store, "val")[1][0]
    b = TSEDataset(without, "val")[1][0]
    assert torch.equal(a, b)
