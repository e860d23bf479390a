"""The offline video demo's generator (prepare_video_demo.py): balanced, seeded,
decodable videos whose classes differ only in the order of events."""
from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

av = pytest.importorskip("av")
import prepare_video_demo as demo  # noqa: E402


def _decode(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _order_seen(frames: np.ndarray) -> list[str]:
    """Colours in the order they first fill part of a frame (from decoded pixels)."""
    seen = []
    for frame in frames.astype(np.float32):
        for name, rgb in demo.COLOURS.items():
            near = np.abs(frame - np.array(rgb, np.float32)).max(axis=2) < 60
            if near.mean() > 0.02 and name not in seen:
                seen.append(name)
    return seen


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("vd")
    rows = demo.generate(out, train_per_class=2, val_per_class=1, seed=3,
                         design=demo.Design(size=32), progress=False)
    return out, rows


def test_manifest_is_balanced_and_lists_every_video(small):
    out, rows = small
    with open(out / "manifest.csv") as fh:
        read = list(csv.DictReader(fh))
    assert read == rows
    for split, per in (("train", 2), ("val", 1)):
        labels = [r["label"] for r in rows if r["split"] == split]
        assert sorted(labels) == sorted(demo.CLASSES * per)
    assert len({r["path"] for r in rows}) == len(rows)
    assert all(r["path"].startswith(f"videos/{r['label']}/") for r in rows)


def test_every_video_decodes_and_shows_its_class_order(small):
    out, rows = small
    for r in rows:
        frames = _decode(out / r["path"])
        assert frames.shape[1:] == (32, 32, 3), r
        assert _order_seen(frames) == r["label"].split("-"), r


def test_same_seed_same_videos_other_seed_other_videos(small, tmp_path):
    out, rows = small
    again = demo.generate(tmp_path / "a", 2, 1, seed=3, design=demo.Design(size=32),
                          progress=False)
    assert again == rows
    for r in rows:
        assert np.array_equal(_decode(out / r["path"]), _decode(tmp_path / "a" / r["path"]))
    demo.generate(tmp_path / "b", 2, 1, seed=4, design=demo.Design(size=32), progress=False)
    first = rows[0]["path"]
    a, b = _decode(out / first), _decode(tmp_path / "b" / first)
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_classes_have_the_same_mean_frame():
    """What clip averaging sees, the time-averaged frame, has the same distribution in
    every class: each class's mean differs from the overall mean by less than five
    standard errors, per colour channel (also for the video length)."""
    rng = np.random.default_rng(0)
    design = demo.Design(size=24)
    n = 120
    stats = np.empty((len(demo.ORDERS), n, 4))
    for c, order in enumerate(demo.ORDERS):
        for k in range(n):
            frames = demo.frames_of(order, rng, design)
            stats[c, k, :3] = frames.reshape(-1, 3).mean(0)
            stats[c, k, 3] = len(frames)
    overall = stats.reshape(-1, 4).mean(0)
    se = stats.reshape(-1, 4).std(0) / np.sqrt(n)
    z = np.abs(stats.mean(1) - overall) / se
    assert z.max() < 5, z


def test_events_never_share_a_clip_of_eight_frames():
    """Gaps of at least min_gap (> 8) noise frames: no 8-frame clip holds two colours."""
    rng = np.random.default_rng(1)
    design = demo.Design(size=24)
    for order in demo.ORDERS:
        frames = demo.frames_of(order, rng, design).astype(np.float32)
        coloured = [[np.abs(f - np.array(rgb, np.float32)).max(axis=2).min() < 1
                     for rgb in demo.COLOURS.values()] for f in frames]
        coloured = np.array(coloured)                       # [T, 3]
        for s in range(0, max(1, len(frames) - 7)):
            assert coloured[s:s + 8].any(axis=0).sum() <= 1


@pytest.mark.parametrize("args, message", [
    (["--train-per-class", "0"], "--train-per-class and --val-per-class must be at least 1"),
    (["--size", "8"], "--size must be at least 16"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, args, message):
    r = subprocess.run([sys.executable, "prepare_video_demo.py", "--out", str(tmp_path / "o"),
                        *args], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_out_pointing_at_a_file_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    r = subprocess.run([sys.executable, "prepare_video_demo.py", "--out", str(target)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "is a file" in r.stderr and "Traceback" not in r.stderr
    assert target.read_text() == "x"
