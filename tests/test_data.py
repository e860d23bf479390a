"""Data validation (docs/DESIGN.md section 1), batching, and the error path of the entry scripts.

Every bad-data case asserts the exception type and that the message names the
video id, the file, and (where the code says it) what to fix.
"""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from dejavid.data.dataset import MAX_REPORTED, DataValidationError, TSEDataset, collate_packed
from dejavid.config.settings import index_from_config
from helpers import (DICT_FILE, feature_file, good_videos, make_config, read_pickle,
                     write_config_yaml, write_dataset, write_pickle)
from helpers import seeded_video as _video

ROOT = Path(__file__).resolve().parents[1]
F = 3




def load_with(tmp_path: Path, videos: dict, layout="per_file", **cfg) -> object:
    paths = write_dataset(tmp_path, videos, layout=layout)
    return index_from_config(make_config(paths, **cfg), progress=False)


def bad_one(tmp_path: Path, vid: str, tensor, **cfg) -> str:
    """Replace one video by ``tensor``; return the DataValidationError message."""
    videos = good_videos()
    _, label, split = videos[vid]
    videos[vid] = (tensor, label, split)
    with pytest.raises(DataValidationError) as info:
        load_with(tmp_path, videos, **cfg)
    return str(info.value)


def names(msg: str, vid: str, fname: str) -> None:
    assert f"video '{vid}'" in msg, msg
    assert f"'{fname}'" in msg, msg


# ---------------------------------------------------------------- tensor files

def test_missing_tensor_file(tmp_path):
    paths = write_dataset(tmp_path, good_videos())
    (paths["id2feats"] / feature_file("b1")).unlink()
    with pytest.raises(DataValidationError) as info:
        index_from_config(make_config(paths), progress=False)
    msg = str(info.value)
    names(msg, "b1", "b1.pt")
    assert "file not found" in msg
    assert len(info.value.problems) == 1


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_unreadable_tensor_file(tmp_path, damage):
    paths = write_dataset(tmp_path, good_videos())
    f = paths["id2feats"] / feature_file("a2")
    if damage == "truncated":
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    else:
        f.write_bytes(b"this is not a torch file\x00\x01\x02")
    with pytest.raises(DataValidationError) as info:
        index_from_config(make_config(paths), progress=False)
    msg = str(info.value)
    names(msg, "a2", "a2.pt")
    assert "cannot be read" in msg
    assert "re-save it with torch.save" in msg


def test_empty_tensor_file(tmp_path):
    paths = write_dataset(tmp_path, good_videos())
    (paths["id2feats"] / feature_file("a2")).write_bytes(b"")
    with pytest.raises(DataValidationError) as info:
        index_from_config(make_config(paths), progress=False)
    msg = str(info.value)
    names(msg, "a2", "a2.pt")
    assert "cannot be read" in msg


@pytest.mark.parametrize("shape", [(5,), (2, 4, F)], ids=["1d", "3d"])
def test_wrong_rank(tmp_path, shape):
    msg = bad_one(tmp_path, "a3", torch.zeros(shape))
    names(msg, "a3", "a3.pt")
    assert "must be 2-D [T, F]" in msg
    assert str(tuple(shape)) in msg


def test_empty_video(tmp_path):
    msg = bad_one(tmp_path, "b2", torch.zeros(0, F))
    names(msg, "b2", "b2.pt")
    assert "T = 0" in msg
    assert "at least one clip" in msg


def test_not_a_tensor(tmp_path):
    msg = bad_one(tmp_path, "a1", [[1.0, 2.0, 3.0]])
    names(msg, "a1", "a1.pt")
    assert "expected a tensor" in msg


def test_feature_size_differs_between_videos(tmp_path):
    # b2 sorts last, so the earlier videos set F = 3 when feature_size is 0.
    msg = bad_one(tmp_path, "b2", _video(6, 6, f=F + 2))
    names(msg, "b2", "b2.pt")
    assert f"feature size {F + 2} differs from {F}" in msg
    assert f"first video checked has F = {F}" in msg


def test_feature_size_differs_from_config(tmp_path):
    with pytest.raises(DataValidationError) as info:
        load_with(tmp_path, good_videos(), feature_size=F + 1)
    msg = str(info.value)
    names(msg, "a1", "a1.pt")
    assert f"feature size {F} differs from {F + 1}" in msg
    assert "config feature_size" in msg
    assert len(info.value.problems) == len(good_videos())


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")],
                         ids=["nan", "inf", "-inf"])
def test_non_finite_values(tmp_path, value):
    t = _video(4, 1)
    t[2, 1] = value
    msg = bad_one(tmp_path, "a1", t)
    names(msg, "a1", "a1.pt")
    assert "NaN or Inf" in msg


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
def test_integer_dtype(tmp_path, dtype):
    msg = bad_one(tmp_path, "a2", torch.ones(2, F, dtype=dtype))
    names(msg, "a2", "a2.pt")
    assert "integer tensor" in msg
    assert "tensor.float()" in msg


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_converted_with_one_warning(tmp_path, dtype):
    videos = good_videos()
    halves = {}
    for vid in ("a1", "b1"):
        t, label, split = videos[vid]
        halves[vid] = t.to(dtype)
        videos[vid] = (halves[vid], label, split)
    paths = write_dataset(tmp_path, videos)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = index_from_config(make_config(paths), progress=False)
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(runtime) == 1, [str(w.message) for w in runtime]
    assert "2 video(s)" in str(runtime[0].message)
    assert "float32" in str(runtime[0].message)
    for split, vid in (("train", "a1"), ("val", "b1")):
        ds = TSEDataset(index, split, progress=False)
        x = next(x for x, _, k in (ds[n] for n in range(len(ds))) if index.ids[k] == vid)
        assert x.dtype == torch.float32
        torch.testing.assert_close(x, halves[vid].float(), rtol=0, atol=0)


# ---------------------------------------------------------------- maps

@pytest.mark.parametrize("drop_from", ["id2splits", "id2labels", "id2fname"])
def test_id_missing_from_one_map(tmp_path, drop_from):
    paths = write_dataset(tmp_path, good_videos())
    m = read_pickle(paths[drop_from])
    del m["b1"]
    write_pickle(paths[drop_from], m)
    with pytest.raises(DataValidationError) as info:
        index_from_config(make_config(paths), progress=False)
    msg = str(info.value)
    assert "video 'b1'" in msg
    assert f"missing from {drop_from}" in msg
    assert "every id must appear in all three maps" in msg


def test_unknown_split(tmp_path):
    videos = good_videos()
    t, label, _ = videos["b1"]
    videos["b1"] = (t, label, "validation")
    with pytest.raises(DataValidationError) as info:
        load_with(tmp_path, videos)
    msg = str(info.value)
    names(msg, "b1", "b1.pt")
    assert "unknown split 'validation'" in msg
    assert "use one of train, val, test" in msg


def test_non_integer_label(tmp_path):
    videos = good_videos()
    t, _, split = videos["a4"]
    videos["a4"] = (t, "3", split)
    with pytest.raises(DataValidationError) as info:
        load_with(tmp_path, videos)
    msg = str(info.value)
    names(msg, "a4", "a4.pt")
    assert "is not an integer" in msg


@pytest.mark.parametrize("split", ["val", "test"])
def test_class_without_training_video(tmp_path, split):
    videos = good_videos()
    videos["c1"] = (_video(3, 9), 42, split)
    with pytest.raises(DataValidationError) as info:
        load_with(tmp_path, videos)
    msg = str(info.value)
    names(msg, "c1", "c1.pt")
    assert f"label 42 of split '{split}' has no training video" in msg
    assert "at least one 'train' video" in msg


def test_pickle_not_a_dict(tmp_path):
    paths = write_dataset(tmp_path, good_videos())
    write_pickle(paths["id2splits"], [("a1", "train")])
    with pytest.raises(ValueError) as info:
        index_from_config(make_config(paths), progress=False)
    msg = str(info.value)
    assert "id2splits" in msg and str(paths["id2splits"]) in msg
    assert "must hold a dict" in msg
    assert "got list" in msg


def test_corrupt_pickle(tmp_path):
    paths = write_dataset(tmp_path, good_videos())
    paths["id2labels"].write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError) as info:
        index_from_config(make_config(paths), progress=False)
    msg = str(info.value)
    assert "cannot read id2labels pickle" in msg and str(paths["id2labels"]) in msg


@pytest.mark.parametrize("key", ["id2splits", "id2labels", "id2fname"])
def test_missing_pickle_file(tmp_path, key):
    paths = write_dataset(tmp_path, good_videos())
    paths[key].unlink()
    with pytest.raises(FileNotFoundError) as info:
        index_from_config(make_config(paths), progress=False)
    msg = str(info.value)
    assert f"set config key '{key}'" in msg
    assert str(paths[key]) in msg


def test_missing_root_folder(tmp_path):
    paths = write_dataset(tmp_path, good_videos())
    cfg = make_config(paths, id2feats=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as info:
        index_from_config(cfg, progress=False)
    msg = str(info.value)
    assert "set config key 'id2feats'" in msg
    assert "nowhere" in msg


def test_num_classes_disagrees_with_data(tmp_path):
    with pytest.raises(ValueError) as info:
        load_with(tmp_path, good_videos(), num_classes=5)
    msg = str(info.value)
    assert "num_classes = 5" in msg
    assert "3 classes" in msg
    assert "fix num_classes" in msg


def test_more_than_twenty_problems(tmp_path):
    videos = good_videos()
    n_bad = MAX_REPORTED + 5
    for i in range(n_bad):
        videos[f"bad{i:02d}"] = (torch.full((2, F), float("nan")), 3, "train")
    with pytest.raises(DataValidationError) as info:
        load_with(tmp_path, videos)
    msg = str(info.value)
    assert msg.startswith(f"{n_bad} problem(s) in the dataset (first {MAX_REPORTED} shown)")
    assert len(info.value.problems) == MAX_REPORTED
    assert msg.count("NaN or Inf") == MAX_REPORTED
    assert "video 'bad00'" in msg and "video 'bad19'" in msg
    assert "video 'bad20'" not in msg


def test_problems_of_several_videos_reported_together(tmp_path):
    videos = good_videos()
    videos["a1"] = (torch.zeros(0, F), 10, "train")
    videos["b2"] = (torch.zeros(3), 7, "test")
    with pytest.raises(DataValidationError) as info:
        load_with(tmp_path, videos)
    assert str(info.value).startswith("2 problem(s) in the dataset:")
    names(info.value.problems[0], "a1", "a1.pt")
    names(info.value.problems[1], "b2", "b2.pt")


def test_dict_file_lacks_video_key(tmp_path):
    paths = write_dataset(tmp_path, good_videos(), layout="dict")
    packed = torch.load(paths["id2feats"] / DICT_FILE, weights_only=True)
    del packed["a3"]
    torch.save(packed, paths["id2feats"] / DICT_FILE)
    with pytest.raises(DataValidationError) as info:
        index_from_config(make_config(paths), progress=False)
    msg = str(info.value)
    names(msg, "a3", DICT_FILE)
    assert "without key 'a3'" in msg
    assert len(info.value.problems) == 1


# ---------------------------------------------------------------- valid data

MIXED = {"a1": "dict", "a2": "per_file", "a3": "dict", "a4": "per_file",
         "b1": "dict", "b2": "per_file"}


@pytest.mark.parametrize("layout", ["per_file", "dict", MIXED], ids=["per_file", "dict", "mixed"])
def test_valid_dataset_loads(tmp_path, layout):
    videos = good_videos()
    index = load_with(tmp_path, videos, layout=layout)
    assert index.label_values == [3, 7, 10]
    assert index.num_classes == 3
    assert index.feature_size == F
    remap = {3: 0, 7: 1, 10: 2}
    by_id = {vid: k for k, vid in enumerate(index.ids)}
    assert set(by_id) == set(videos)
    for vid, (t, label, split) in videos.items():
        k = by_id[vid]
        assert index.labels[k] == remap[label]
        assert index.lengths[k] == t.shape[0]
        assert index.splits[k] == split
    assert index.labels.dtype == np.int64
    assert sorted(index.ids[k] for k in index.rows("train")) == ["a1", "a2", "a3", "a4"]
    assert [index.ids[k] for k in index.rows("val")] == ["b1"]
    assert [index.ids[k] for k in index.rows("test")] == ["b2"]


def test_valid_dataset_with_config_sizes(tmp_path):
    index = load_with(tmp_path, good_videos(), num_classes=3, feature_size=F)
    assert index.num_classes == 3 and index.feature_size == F


def test_integer_ids_with_string_keys_in_dict_file(tmp_path):
    videos = {i: (_video(i + 1, i), i % 2, "train") for i in range(4)}
    paths = write_dataset(tmp_path, videos, layout="dict")
    torch.save({str(i): t for i, (t, _, _) in videos.items()}, paths["id2feats"] / DICT_FILE)
    index = index_from_config(make_config(paths), progress=False)
    ds = TSEDataset(index, "train", progress=False)
    for n in range(len(ds)):
        x, label, k = ds[n]
        torch.testing.assert_close(x, videos[index.ids[k]][0])
        assert label == index.ids[k] % 2


def test_fingerprint_tracks_content(tmp_path):
    videos = good_videos()
    paths = write_dataset(tmp_path, videos)
    cfg = make_config(paths)
    before = index_from_config(cfg, progress=False)
    again = index_from_config(cfg, progress=False)
    for split in ("train", "val", "test"):
        assert before.fingerprint(split) == again.fingerprint(split)

    changed = videos["a3"][0].clone()
    changed[0, 0] += 1e-3
    torch.save(changed, paths["id2feats"] / feature_file("a3"))
    after = index_from_config(cfg, progress=False)
    assert after.fingerprint("train") != before.fingerprint("train")
    assert after.fingerprint("val") == before.fingerprint("val")
    assert after.fingerprint("test") == before.fingerprint("test")


def test_fingerprint_tracks_labels(tmp_path):
    videos = good_videos()
    paths = write_dataset(tmp_path, videos)
    cfg = make_config(paths)
    before = index_from_config(cfg, progress=False).fingerprint("train")
    labels = read_pickle(paths["id2labels"])
    labels["a4"] = 7
    write_pickle(paths["id2labels"], labels)
    assert index_from_config(cfg, progress=False).fingerprint("train") != before


# ---------------------------------------------------------------- batching

def test_collate_packed_offsets_and_concatenation():
    xs = [_video(t, t) for t in (3, 1, 5, 2)]
    items = [(x, lab, row) for x, lab, row in zip(xs, (2, 0, 1, 2), (7, 3, 9, 0))]
    batch = collate_packed(items)
    assert batch.offsets.tolist() == [0, 3, 4, 9, 11]
    assert batch.offsets.dtype == torch.int64
    assert batch.x.shape == (11, F)
    for b, x in enumerate(xs):
        torch.testing.assert_close(batch.x[batch.offsets[b]:batch.offsets[b + 1]], x,
                                   rtol=0, atol=0)
    assert batch.labels.tolist() == [2, 0, 1, 2]
    assert batch.rows.tolist() == [7, 3, 9, 0]


def test_collate_packed_single_item():
    x = _video(4, 0)
    batch = collate_packed([(x, 1, 5)])
    assert batch.offsets.tolist() == [0, 4]
    torch.testing.assert_close(batch.x, x, rtol=0, atol=0)


@pytest.mark.parametrize("layout", ["per_file", MIXED], ids=["per_file", "mixed"])
def test_in_memory_matches_lazy(tmp_path, layout):
    videos = good_videos()
    index = load_with(tmp_path, videos, layout=layout)
    for split in ("train", "val", "test"):
        lazy = TSEDataset(index, split, in_memory=False, progress=False)
        eager = TSEDataset(index, split, in_memory=True, progress=False)
        assert len(lazy) == len(eager) == len(index.rows(split))
        for n in range(len(lazy)):
            (xl, ll, kl), (xe, le, ke) = lazy[n], eager[n]
            assert (ll, kl) == (le, ke)
            assert xl.dtype == xe.dtype == torch.float32
            torch.testing.assert_close(xl, xe, rtol=0, atol=0)
            torch.testing.assert_close(xl, videos[index.ids[kl]][0], rtol=0, atol=0)


def test_dataset_of_empty_split(tmp_path):
    videos = {k: v for k, v in good_videos().items() if v[2] != "test"}
    index = load_with(tmp_path, videos)
    with pytest.raises(ValueError, match="split 'test' has no videos"):
        TSEDataset(index, "test", progress=False)


# ---------------------------------------------------------------- entry script

def test_cli_reports_bad_data_without_traceback(tmp_path):
    paths = write_dataset(tmp_path, good_videos())
    (paths["id2feats"] / feature_file("b2")).write_bytes(b"garbage")
    yml = write_config_yaml(tmp_path / "bad.yaml", paths, num_timesteps=2,
                            sample_size_per_class=2, dba_max_iter=1)
    proc = subprocess.run([sys.executable, "compute_centroids.py", "--config", str(yml),
                           "--no-progress"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "error:" in proc.stderr
    assert "video 'b2' (file 'b2.pt')" in proc.stderr
    assert "Traceback" not in proc.stderr
