"""extract_tse.py end to end on videos written here with PyAV, a tiny random-init
Hugging Face VideoMAE (and torchvision's r3d_18 wherever torchvision imports), then
train_dejavid.py on the result; failures, resume after SIGKILL, re-runs and a 2-rank
gloo run compared bitwise with one process."""
from __future__ import annotations

import csv
import hashlib
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT

av = pytest.importorskip("av", reason="the extraction tests need PyAV (pip install av)")
pytest.importorskip("transformers", reason="the extraction tests need transformers")

import extract_tse  # noqa: E402
from dejavid.extract.encoders import build_encoder  # noqa: E402
from dejavid.extract.pipeline import Options, extract  # noqa: E402
from dejavid.extract.sampling import Sampling  # noqa: E402
from dejavid.extract.sources import Listing, VideoItem, csv_source  # noqa: E402

# A VideoMAE small enough to run in milliseconds: 4 frames of 32 x 32, one layer.
TINY = {"videomae": dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, image_size=32, patch_size=16, num_frames=4,
                         num_labels=5)}
TINY_FLAGS = [f for k, v in TINY["videomae"].items() for f in ("--hf-config", f"{k}={v}")]


def make_video(path: Path, n_frames: int, seed: int = 0, w: int = 48, h: int = 40, fps: int = 10,
               codec: str = "mpeg4") -> Path:
    """A small video whose frames differ by ``seed`` and by time (the MP4 index first, so
    a cut copy still claims every frame)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for k in range(n_frames):
            img = np.full((h, w, 3), (k * 9 + seed * 37) % 256, np.uint8)
            img[:, : (k * 3) % w] = rng.integers(0, 256, 3, dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """root/<class>/<video>: 2 classes x 4 videos, 3 to 30 frames at 10 fps."""
    root = tmp_path_factory.mktemp("videos")
    for c, cls in enumerate(("jump", "wave")):
        for k in range(4):
            make_video(root / cls / f"{cls}{k}.mp4", (3, 12, 21, 30)[k], seed=10 * c + k)
    return root


def run_cli(args, cwd=ROOT, **kw):
    return subprocess.run([sys.executable, "extract_tse.py", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300, **kw)


def tiny_args(src: Path, out: Path, *extra) -> list:
    return [str(a) for a in ["--source", "folder", "--videos", src, "--val-fraction", "0.25",
                             "--encoder", "hf:videomae", "--random-init", *TINY_FLAGS, "--out",
                             out, "--batch-clips", "3", "--no-progress", *extra]]


def digests(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((out / "feats").rglob("*.pt"))}


def load(out: Path, name: str):
    with open(out / f"{name}.pkl", "rb") as fh:
        return pickle.load(fh)


# ---------------------------------------------------------------- end to end
def test_folder_to_tses_to_training(videos, tmp_path, capsys):
    out = tmp_path / "out"
    assert extract_tse.main(tiny_args(videos, out, "--workers", "2")) == 0
    printed = capsys.readouterr()
    assert "WARNING: encoder hf:videomae has RANDOM weights" in printed.out
    assert f"python train_dejavid.py --config {out / 'config.yaml'}" in printed.out
    fnames, labels, splits = load(out, "id2fname"), load(out, "id2labels"), load(out, "id2splits")
    assert sorted(fnames) == [f"{c}/{c}{k}" for c in ("jump", "wave") for k in range(4)]
    assert set(labels.values()) == {0, 1} and sorted(splits.values()).count("val") == 2
    for vid, fname in fnames.items():
        x = torch.load(out / fname, weights_only=True)
        n = (3, 12, 21, 30)[int(vid[-1])]
        # clips of 4 frames back to back; a 3-frame video is one padded clip
        assert x.dtype == torch.float32 and x.shape == (max(1, (n - 4) // 4 + 1), 32 + 5), vid
        assert torch.isfinite(x).all()
    cfg = (out / "config.yaml").read_text()
    assert "RANDOM-INIT" in cfg and "feature_size: 37" in cfg and "num_classes: 2" in cfg
    assert (out / "classes.json").read_text().split() == ["{", '"0":', '"jump",', '"1":', '"wave"', "}"]
    assert "padded (shorter than one clip, last frame repeated): 2" in printed.out
    assert (out / "failures.csv").read_text() == "id,path,reason\n"
    import train_dejavid
    assert train_dejavid.main(["--config", str(out / "config.yaml"), "--num_epochs", "2",
                               "--batch_size", "4", "--num_timesteps", "2", "--output_dir",
                               str(tmp_path / "runs"), "--no-progress"]) == 0
    assert "best val top-1" in capsys.readouterr().out


def test_extraction_json_rebuilds_the_encoder(videos, tmp_path):
    """What a later predict step does: rebuild encoder and sampling from extraction.json
    and encode a new video into the same features."""
    from dejavid.extract.decode import decode_clips
    from dejavid.extract.pipeline import rebuild
    out = tmp_path / "out"
    assert extract_tse.main(tiny_args(videos, out, "--workers", "0", "--frame-stride", "2",
                                      "--fps", "5")) == 0
    enc, sampling, settings = rebuild(out)
    assert sampling == Sampling(4, 2, clip_stride=4, fps=5.0) and settings["append_logits"]
    # 30 frames at 10 fps seen at 5 fps: 15 frames; clips span 7: T = (15 - 7) // 4 + 1
    assert len(torch.load(out / "feats" / "wave" / "wave3.pt", weights_only=True)) == 3
    clips, _ = decode_clips(str(videos / "wave" / "wave3.mp4"), sampling, enc.pre.resize)
    emb, logits = enc(torch.from_numpy(np.ascontiguousarray(enc.crop(clips))))
    stored = torch.load(out / "feats" / "wave" / "wave3.pt", weights_only=True)
    assert torch.allclose(torch.cat([emb, logits], 1), stored, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="extraction.json not found"):
        rebuild(tmp_path)


def test_a_videos_features_do_not_depend_on_its_batch_neighbours(videos, tmp_path):
    """Every encoder call has --batch-clips rows, so a video's tensor is the same bits
    whichever videos shared its calls (and whichever worker decoded it)."""
    import shutil
    only = tmp_path / "only"
    shutil.copytree(videos / "wave", only / "wave")
    a, b = tmp_path / "a", tmp_path / "b"
    assert extract_tse.main(tiny_args(videos, a, "--workers", "0")) == 0
    assert extract_tse.main(tiny_args(only, b, "--workers", "1")) == 0
    wave = {k: v for k, v in digests(a).items() if k.startswith("feats/wave/")}
    assert len(wave) == 4 and digests(b) == wave


def test_rerun_skips_overwrite_redoes_and_other_settings_are_refused(videos, tmp_path, capsys):
    out = tmp_path / "out"
    assert extract_tse.main(tiny_args(videos, out, "--workers", "0")) == 0
    first = digests(out)
    stamp = {p: p.stat().st_mtime_ns for p in (out / "feats").rglob("*.pt")}
    capsys.readouterr()
    (out / "feats" / "jump" / ".jump0.pt.abc.tmp").write_bytes(b"half")   # a killed write
    (out / "cache").mkdir()
    (out / "cache" / ".busy.tmp").write_bytes(b"")                       # not ours: kept
    assert extract_tse.main(tiny_args(videos, out, "--workers", "0")) == 0
    text = capsys.readouterr().out
    assert "8 already written, 0 to extract" in text
    assert "removed 1 temporary file(s) of an interrupted run" in text
    assert not list((out / "feats").rglob("*.tmp")) and (out / "cache" / ".busy.tmp").exists()
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp
    assert extract_tse.main(tiny_args(videos, out, "--workers", "0", "--overwrite")) == 0
    assert "0 already written, 8 to extract" in capsys.readouterr().out
    assert digests(out) == first
    proc = run_cli(tiny_args(videos, out, "--workers", "0", "--clip-stride", "2"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "holds an extraction with other settings (sampling differ" in proc.stderr
    assert digests(out) == first


@pytest.mark.parametrize("extra, message", [
    (["--encoder", "nosuch:x"], "unknown encoder 'nosuch:x'"),
    (["--clip-len", "0"], "--clip-len 0"),
    (["--num-clips", "2", "--clip-stride", "3"], "exactly one of --clip-stride and --num-clips"),
    (["--encoder", "torchscript:/no/such.pt"], "--random-init does not apply to torchscript")])
def test_bad_arguments_stop_before_any_work(videos, tmp_path, extra, message, capsys):
    """(In this process, through the script's own error handling; the re-run test runs the
    script itself into the same kind of error.)"""
    from dejavid.config import cli
    with pytest.raises(SystemExit) as stop:
        cli.main_guard(lambda: extract_tse.main(tiny_args(videos, tmp_path / "out", "--workers", "0") + extra))
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("error: ") and message in err
    assert not (tmp_path / "out" / "feats").exists()


def test_num_clips_and_float16(videos, tmp_path):
    out = tmp_path / "out"
    assert extract_tse.main(tiny_args(videos, out, "--workers", "0", "--num-clips", "3",
                                      "--frame-stride", "2", "--dtype", "float16",
                                      "--no-append-logits", "--build-store")) == 0
    x = torch.load(out / "feats" / "wave" / "wave3.pt", weights_only=True)
    assert x.dtype == torch.float16 and x.shape == (3, 32)
    stores = list((out / "cache").glob("store_*/train.meta.json"))
    assert len(stores) == 1, list((out / "cache").rglob("*"))
    short = torch.load(out / "feats" / "wave" / "wave0.pt", weights_only=True)
    assert short.shape == (1, 32)          # 3 frames < one 7-frame span: one padded clip


# ---------------------------------------------------------------- bad input
def test_bad_videos_go_to_failures_csv_and_exit_3(videos, tmp_path, capsys):
    vids = tmp_path / "v"
    good = [make_video(vids / f"g{k}.mp4", 9, seed=k) for k in range(2)]
    (vids / "corrupt.mp4").write_bytes(os.urandom(3000))
    (vids / "empty.mp4").write_bytes(b"")
    with av.open(str(vids / "audio.mkv"), "w") as c:                 # audio only
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    zero = av.open(str(vids / "zero.mkv"), "w")                      # a video stream, no frames
    s = zero.add_stream("mpeg4", rate=10)
    s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
    zero.start_encoding()
    zero.close()
    full = make_video(vids / "trunc.mp4", 60, seed=5, w=64, h=64)
    data = full.read_bytes()
    full.write_bytes(data[: len(data) // 3])                         # header says 60 frames
    rows = ["path,label,split", "g0.mp4,x,train", "g1.mp4,y,val", "corrupt.mp4,x,train",
            "empty.mp4,x,train", "audio.mkv,x,train", "trunc.mp4,y,train", "gone.mp4,x,train",
            "g0.mp4,y,train", "g1.mp4,zebra,train", "zero.mkv,y,train"]
    (vids / "m.csv").write_text("\n".join(rows) + "\n")
    listing = csv_source(vids / "m.csv", classes=["x", "y"])
    enc = build_encoder("hf:videomae", random_init=True, overrides=TINY["videomae"])
    out = tmp_path / "out"
    code = extract(listing, enc, Sampling(4, clip_stride=4), Options(out, workers=2, progress=False))
    assert code == 3
    with open(out / "failures.csv", newline="") as fh:
        failed = {r["id"]: r["reason"] for r in csv.DictReader(fh)}
    assert sorted(failed) == ["audio", "corrupt", "empty", "g0", "g1", "gone", "trunc", "zero"]
    assert failed["zero"].startswith(("unreadable", "no frames decoded")), failed["zero"]
    assert failed["gone"] == "missing: no such file"
    assert failed["audio"].startswith("no video stream")
    assert failed["corrupt"].startswith("unreadable") and failed["empty"].startswith("unreadable")
    assert re.fullmatch(r"truncated: decoded \d+ of the 60 frames its header claims", failed["trunc"])
    assert failed["g0"].startswith("duplicate id") and failed["g1"].startswith("duplicate id")
    assert load(out, "id2labels") == {"g0": 0, "g1": 1}             # the first listings
    assert sorted(p.name for p in (out / "feats").iterdir()) == ["g0.pt", "g1.pt"]
    assert not list(out.rglob("*.tmp"))
    text = capsys.readouterr().out
    assert "FAILED: 8 videos" in text
    # an unknown label is a failure too
    listing = Listing([VideoItem("g0", str(good[0]), "zebra", "train")], ["x"])
    out2 = tmp_path / "out2"
    assert extract(listing, enc, Sampling(4, clip_stride=4), Options(out2, workers=0, progress=False)) == 3
    assert "unknown label 'zebra'" in (out2 / "failures.csv").read_text()


def test_truncated_video_reports_the_header_count(tmp_path):
    from dejavid.extract.decode import VideoError, decode_video
    full = make_video(tmp_path / "t.mp4", 60, seed=1, w=64, h=64)
    frames, fps = decode_video(str(full))
    assert frames.shape == (60, 64, 64, 3) and fps == 10
    data = full.read_bytes()
    full.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoError, match=r"truncated: decoded \d+ of the 60 frames"):
        decode_video(str(full))
    small, _ = decode_video(str(make_video(tmp_path / "s.mp4", 5, w=48, h=40)), short_side=20)
    assert small.shape == (5, 20, 24, 3)


def test_clips_decode_only_the_frames_they_use_and_match_all_frames(tmp_path, monkeypatch):
    """decode_clips keeps only the sampled frames (planned from the header), and gives
    exactly the clips of indexing all decoded frames; a header that is off is re-planned."""
    from dejavid.extract import decode
    from dejavid.extract.sampling import clip_indices
    path = str(make_video(tmp_path / "v.mp4", 50, seed=3))
    allf, fps = decode.decode_video(path, short_side=20)
    s = Sampling(3, frame_stride=4, num_clips=2)
    clips, padded = decode.decode_clips(path, s, short_side=20)
    idx, _ = clip_indices(50, s, fps)
    assert not padded and np.array_equal(clips, allf[idx]) and clips.shape == (2, 3, 20, 24, 3)
    kept, real = [], decode._read

    def spy(*args, **kw):
        out = real(*args, **kw)
        kept.append(len(out[0]))
        return out
    monkeypatch.setattr(decode, "_read", spy)
    decode.decode_clips(path, s, short_side=20)
    assert kept == [len(np.unique(idx))] == [6]


# ---------------------------------------------------------------- restarts and ranks
@pytest.fixture(scope="module")
def many_videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("many")
    for c, cls in enumerate(("a", "b")):
        for k in range(12):
            make_video(root / cls / f"{cls}{k:02d}.mp4", 16 + 4 * k, seed=100 * c + k)
    return root


@pytest.fixture(scope="module")
def reference(many_videos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "out"
    assert extract_tse.main(tiny_args(many_videos, out, "--workers", "0", "--batch-clips", "1")) == 0
    return out


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # as a background job of a shell script


@pytest.mark.parametrize("sig, background", [(signal.SIGKILL, False), (signal.SIGINT, False),
                                             (signal.SIGINT, True)],
                         ids=["SIGKILL", "Ctrl-C", "Ctrl-C, started in the background"])
def test_resume_after_a_kill_gives_the_same_files(many_videos, reference, tmp_path, sig,
                                                  background, capsys):
    """Also when the process inherits SIGINT ignored (a background job of a
    non-interactive shell, as some CI runners start the suite): `kill -INT` still stops it
    (cli.main_guard installs the handler)."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "extract_tse.py",
                             *tiny_args(many_videos, out, "--workers", "1", "--batch-clips", "1")],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_ignore_sigint if background else None)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((out / "feats").rglob("*.pt"))) < 3:
        time.sleep(0.02)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    partial = len(list((out / "feats").rglob("*.pt")))
    assert 3 <= partial < 24, partial           # killed mid-run
    assert not (out / "config.yaml").exists()
    assert extract_tse.main(tiny_args(many_videos, out, "--workers", "0", "--batch-clips", "1")) == 0
    assert f"{partial} already written, {24 - partial} to extract" in capsys.readouterr().out
    assert not list(out.rglob("*.tmp"))
    assert digests(out) == digests(reference)
    for name in ("id2splits", "id2labels"):
        assert load(out, name) == load(reference, name)


def test_two_gloo_ranks_write_what_one_process_writes(many_videos, reference, tmp_path):
    """Two ranks continue a partial output of a 1-process run (another world size) and
    end with the files of one uninterrupted process."""
    import shutil
    out = tmp_path / "out"
    (out / "feats" / "a").mkdir(parents=True)
    shutil.copy(reference / "extraction.json", out / "extraction.json")
    for k in range(5):                                   # what a killed 1-process run left
        shutil.copy(reference / "feats" / "a" / f"a{k:02d}.pt", out / "feats" / "a")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", "extract_tse.py",
                           *tiny_args(many_videos, out, "--workers", "0", "--batch-clips", "1")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "5 already written, 19 to extract (10 on this rank of 2)" in proc.stdout
    assert digests(out) == digests(reference)
    for name in ("id2splits", "id2labels", "id2fname"):
        assert load(out, name) == load(reference, name)
    assert not list(out.glob(".failures-rank*"))


def test_torchvision_r3d_18_to_training(videos, tmp_path, capsys):
    """The same path with torchvision's r3d_18 (random init) wherever torchvision imports."""
    from test_extract_encoders import _torchvision_or_skip
    _torchvision_or_skip()
    out = tmp_path / "out"
    args = ["--source", "folder", "--videos", str(videos), "--val-fraction", "0.25", "--encoder",
            "torchvision:r3d_18", "--random-init", "--clip-len", "4", "--out", str(out),
            "--workers", "1", "--no-progress"]
    assert extract_tse.main(args) == 0
    x = torch.load(out / "feats" / "wave" / "wave3.pt", weights_only=True)
    assert x.shape == (7, 512 + 400)
    import train_dejavid
    assert train_dejavid.main(["--config", str(out / "config.yaml"), "--num_epochs", "1",
                               "--batch_size", "4", "--num_timesteps", "2", "--output_dir",
                               str(tmp_path / "runs"), "--no-progress"]) == 0
