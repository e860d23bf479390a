"""Video sources (each annotation format written here as a tiny fixture) and the
sampling arithmetic of the TSE's time axis."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dejavid.extract.sampling import Sampling, clip_indices, clip_starts, resample
from dejavid.extract.sources import (csv_source, folder_source, hmdb51_source, k400_source,
                                     ssv2_source, ssv2_template, stratified_split)


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


# ---------------------------------------------------------------- sources
def test_folder_source_labels_from_folders_and_a_stratified_seeded_split(tmp_path):
    for c, n in (("walk", 10), ("run", 5)):
        for k in range(n):
            _touch(tmp_path / c / f"v{k}.mp4")
    _touch(tmp_path / "walk" / "notes.txt")          # not a video
    a = folder_source(tmp_path, val_fraction=0.2, seed=3)
    assert a.classes == ["run", "walk"]
    assert len(a.items) == 15 and all(i.vid == f"{i.label}/{i.path.rsplit('/', 1)[1][:-4]}"
                                      for i in a.items)
    val = {c: sum(i.split == "val" for i in a.items if i.label == c) for c in a.classes}
    assert val == {"walk": 2, "run": 1}               # per class; at least one
    assert a == folder_source(tmp_path, val_fraction=0.2, seed=3)   # deterministic
    other = folder_source(tmp_path, val_fraction=0.2, seed=4)
    assert {i.vid for i in other.items if i.split == "val"} != {i.vid for i in a.items if i.split == "val"}


def test_folder_source_split_file(tmp_path):
    for k in range(3):
        _touch(tmp_path / "videos" / "jump" / f"j{k}.avi")
    (tmp_path / "split.csv").write_text("id,split\njump/j0,test\njump/j2,val\n")
    a = folder_source(tmp_path / "videos", split_file=tmp_path / "split.csv")
    assert {i.vid: i.split for i in a.items} == {"jump/j0": "test", "jump/j1": "train", "jump/j2": "val"}
    (tmp_path / "split.csv").write_text("jump/j0,holdout\n")
    with pytest.raises(ValueError, match="unknown split name.*holdout"):
        folder_source(tmp_path / "videos", split_file=tmp_path / "split.csv")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        folder_source(tmp_path / "nowhere")


def test_stratified_split_bounds():
    pairs = [(f"a{k}", "a") for k in range(4)] + [("b0", "b")]
    out = stratified_split(pairs, 0.5, seed=0)
    assert sum(v == "val" for k, v in out.items() if k.startswith("a")) == 2
    assert out["b0"] == "train"                        # a lone video stays in train
    assert set(stratified_split(pairs, 0.0, 0).values()) == {"train"}
    with pytest.raises(ValueError, match="val-fraction"):
        stratified_split(pairs, 1.0, 0)


def test_csv_manifest(tmp_path):
    (tmp_path / "m.csv").write_text("path,label,split\nclips/a.mp4,cat,train\nclips/b.mp4,dog,val\n"
                                    "clips/c.mp4,dog,\n")
    a = csv_source(tmp_path / "m.csv", video_root=tmp_path / "root")
    assert a.classes == ["cat", "dog"]
    assert [(i.vid, i.path, i.label, i.split) for i in a.items] == [
        ("clips/a", str(tmp_path / "root/clips/a.mp4"), "cat", "train"),
        ("clips/b", str(tmp_path / "root/clips/b.mp4"), "dog", "val"),
        ("clips/c", str(tmp_path / "root/clips/c.mp4"), "dog", "train")]   # lone: train
    (tmp_path / "bad.csv").write_text("file,class\na.mp4,x\n")
    with pytest.raises(ValueError, match="header 'path,label"):
        csv_source(tmp_path / "bad.csv")


def test_hmdb51_split_files(tmp_path):
    ann = tmp_path / "splits"
    ann.mkdir()
    (ann / "brush_hair_test_split1.txt").write_text("b1.avi 1 \nb2.avi 2 \nb3.avi 0 \n")
    (ann / "brush_hair_test_split2.txt").write_text("b1.avi 2 \nb2.avi 1 \nb3.avi 1 \n")
    (ann / "cartwheel_test_split1.txt").write_text("c1.avi 2 \n\n")
    a = hmdb51_source(ann, tmp_path / "videos", split_number=1)
    assert a.classes == ["brush_hair", "cartwheel"]
    assert [(i.vid, i.label, i.split) for i in a.items] == [
        ("b1", "brush_hair", "train"), ("b2", "brush_hair", "test"), ("c1", "cartwheel", "test")]
    assert a.items[0].path == str(tmp_path / "videos" / "brush_hair" / "b1.avi")
    b = hmdb51_source(ann, tmp_path / "videos", split_number=2)
    assert [(i.vid, i.split) for i in b.items] == [("b1", "test"), ("b2", "train"), ("b3", "train")]
    with pytest.raises(ValueError, match="no '<class>_test_split3.txt'"):
        hmdb51_source(ann, tmp_path, split_number=3)
    with pytest.raises(ValueError, match="splits 1, 2 and 3"):
        hmdb51_source(ann, tmp_path, split_number=4)


def test_k400_official_csvs_find_videos_anywhere_and_keep_missing_ones(tmp_path):
    ann = tmp_path / "ann"
    ann.mkdir()
    head = "label,youtube_id,time_start,time_end,split\n"
    (ann / "train.csv").write_text(head + "abseiling,AAA,14,24,train\nyawning,BBB,0,10,train\n")
    (ann / "validate.csv").write_text(head + "yawning,CCC,5,15,validate\n")
    (ann / "test.csv").write_text(head + "abseiling,DDD,1,11,test\n")
    _touch(tmp_path / "vids" / "train" / "abseiling" / "AAA_000014_000024.mp4")
    _touch(tmp_path / "vids" / "CCC_000005_000015.mp4")
    a = k400_source(ann, tmp_path / "vids")
    assert a.classes == ["abseiling", "yawning"]
    assert [(i.vid, i.label, i.split) for i in a.items] == [
        ("AAA_000014_000024", "abseiling", "train"), ("BBB_000000_000010", "yawning", "train"),
        ("CCC_000005_000015", "yawning", "val")]
    assert a.items[0].path == str(tmp_path / "vids/train/abseiling/AAA_000014_000024.mp4")
    assert a.items[1].path == str(tmp_path / "vids/BBB_000000_000010.mp4")   # missing: kept
    t = k400_source(ann, tmp_path / "vids", splits=("test",))
    assert [(i.vid, i.split) for i in t.items] == [("DDD_000001_000011", "test")]


def test_ssv2_templates_map_to_label_ids(tmp_path):
    labels = {"Putting something on something": "1", "Pushing something from left to right": "0"}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    (tmp_path / "train.json").write_text(json.dumps([
        {"id": "74225", "label": "putting a cup on a table",
         "template": "Putting [something] on [something]", "placeholders": ["a cup", "a table"]},
        {"id": "9", "template": "Pushing [something] from left to right"}]))
    (tmp_path / "validation.json").write_text(json.dumps([
        {"id": "11", "template": "Spinning [something]"}]))          # not in labels.json
    a = ssv2_source(tmp_path, tmp_path / "v")
    assert a.classes == ["Pushing something from left to right", "Putting something on something"]
    assert [(i.vid, i.label, i.split) for i in a.items] == [
        ("74225", "Putting something on something", "train"),
        ("9", "Pushing something from left to right", "train"),
        ("11", "Spinning something", "val")]
    assert a.items[0].path == str(tmp_path / "v" / "74225.webm")
    assert ssv2_template("[Something] falling") == "Something falling"
    for name in ("labels", "train", "validation"):
        (tmp_path / f"{name}.json").rename(tmp_path / f"something-something-v2-{name}.json")
    assert ssv2_source(tmp_path, tmp_path / "v") == a


# ---------------------------------------------------------------- sampling
@pytest.mark.parametrize("n, clip_len, fs, cs, expect_t", [
    (100, 16, 1, 16, 6), (100, 16, 2, 8, 9), (31, 16, 2, 4, 1), (16, 16, 1, 16, 1),
    (17, 16, 1, 1, 2), (250, 8, 4, 32, 7)])
def test_clip_stride_count_and_positions(n, clip_len, fs, cs, expect_t):
    s = Sampling(clip_len, fs, clip_stride=cs).check()
    idx, padded = clip_indices(n, s)
    span = (clip_len - 1) * fs + 1
    assert idx.shape == (expect_t, clip_len) == ((n - span) // cs + 1, clip_len)
    assert not padded and idx[0, 0] == 0 and idx[-1, -1] <= n - 1
    assert (np.diff(idx, axis=1) == fs).all() and (np.diff(idx[:, 0]) == cs).all()
    assert idx[-1, 0] + span + cs > n           # no further clip would fit


def test_num_clips_evenly_spaced_first_and_last():
    s = Sampling(8, 2, num_clips=5).check()
    idx, _ = clip_indices(100, s)
    assert idx.shape == (5, 8)
    assert idx[0, 0] == 0 and idx[-1, -1] == 99            # first at 0, last ends at the end
    assert list(idx[:, 0]) == [0, 21, 42, 64, 85]
    assert clip_starts(100, Sampling(8, 2, num_clips=1)).tolist() == [42]   # centred


def test_short_video_is_padded_with_its_last_frame():
    idx, padded = clip_indices(5, Sampling(8, 2, clip_stride=4))
    assert padded and idx.tolist() == [[0, 2, 4, 4, 4, 4, 4, 4]]
    idx, padded = clip_indices(5, Sampling(8, 1, num_clips=3))
    assert padded and idx.shape == (1, 8)


def test_fps_resampling():
    # 3 s at 30 fps seen at 10 fps: every third frame
    assert resample(90, 30.0, 10.0).tolist() == list(range(0, 90, 3))
    # 2 s at 10 fps seen at 25 fps: frames repeat, duration kept
    r = resample(20, 10.0, 25.0)
    assert len(r) == 50 and r[0] == 0 and r[-1] == 19 and (np.diff(r) >= 0).all()
    idx, _ = clip_indices(90, Sampling(4, 1, clip_stride=4, fps=10.0), src_fps=30.0)
    assert idx.shape == (7, 4) and idx[0].tolist() == [0, 3, 6, 9]
    a, _ = clip_indices(90, Sampling(4, 1, clip_stride=4, fps=10.0), src_fps=30.0)
    assert (a == idx).all()                                   # deterministic


@pytest.mark.parametrize("kw, msg", [
    (dict(clip_len=0, clip_stride=1), "clip-len 0"),
    (dict(clip_len=4, clip_stride=1, num_clips=2), "exactly one"),
    (dict(clip_len=4), "exactly one"),
    (dict(clip_len=4, frame_stride=0, clip_stride=1), "frame-stride"),
    (dict(clip_len=4, num_clips=0), "num-clips"),
    (dict(clip_len=4, clip_stride=2, fps=0.0), "fps")])
def test_bad_sampling_is_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Sampling(**kw).check()
