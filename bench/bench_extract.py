"""Extraction speed (issue #27): decode-only frames/s, encoder-only clips/s and end-to-end
clips/s, and the ratio end-to-end / encoder-only (decoding must not be the bottleneck).

    python bench/bench_extract.py                                   # CPU: both encoders
    python bench/bench_extract.py --device cuda --batch-clips 64 --videomae base \
        --encoders torchvision:r2plus1d_18,videomae                 # the GPU figures

Videos are generated here (``--videos`` of ``--frames`` frames, 320 x 240 at 30 fps,
H.264 via PyAV), in a temporary folder.  Encoders are random-init (nothing is
downloaded; the speed is the architecture's):

* ``torchvision:r2plus1d_18``: its weights' transforms (short side 128, crop 112),
  16-frame clips; skipped with the reason where torchvision does not import;
* ``videomae``: ``--videomae small`` (4 layers, width 384, 112 x 112, 16 frames) or
  ``base`` (transformers' VideoMAEConfig(): 12 layers, width 768, 224 x 224, 16 frames).

Rows: ``decode`` decodes every video (resized to the encoder's short side) in one
process and through ``--workers`` DataLoader workers (the extraction's own
DecodeJobs); ``encoder`` times calls of ``--batch-clips`` already-decoded clips
(after one warm-up call); ``end to end`` is ``extract()`` into a fresh folder
(decoding in ``--workers`` workers, encoding, writing the files).  Encoder-only and
end-to-end alternate for ``--rounds`` rounds and the HEADLINE gives their medians, so
that a change of the machine's load hits both alike.  The load is printed: on a
shared machine the figures move with it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dejavid.runtime  # noqa: E402,F401  (before torch, as the entry scripts)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dejavid.errors import MissingDependency  # noqa: E402
from dejavid.extract.decode import decode_video  # noqa: E402
from dejavid.extract.encoders import build_encoder  # noqa: E402
from dejavid.extract.pipeline import DecodeJobs, Options, extract  # noqa: E402
from dejavid.extract.sampling import Sampling, clip_indices  # noqa: E402
from dejavid.extract.sources import Listing, VideoItem  # noqa: E402

VIDEOMAE = {
    "small": dict(hidden_size=384, num_hidden_layers=4, num_attention_heads=6,
                  intermediate_size=1536, image_size=112, num_frames=16, num_labels=400),
    "base": dict(num_labels=400),
}


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def make_videos(folder: Path, n: int, frames: int) -> Listing:
    import av
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for k in range(n):
        path = folder / f"v{k:03d}.mp4"
        rng = np.random.default_rng(k)
        base = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
        with av.open(str(path), "w") as c:
            s = c.add_stream("libx264", rate=30)
            s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
            for t in range(frames):
                img = np.roll(base, 4 * t, axis=1)          # a moving scene
                for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        items.append(VideoItem(f"v{k:03d}", str(path), "c", "train"))
    return Listing(items, ["c"])


def bench_decode(listing: Listing, enc, sampling: Sampling, workers: int) -> None:
    t0 = time.perf_counter()
    n = sum(len(decode_video(it.path, enc.pre.resize)[0]) for it in listing.items)
    one = time.perf_counter() - t0
    jobs = DecodeJobs(listing.items, sampling, enc.pre.resize, enc.pre.crop)
    loader = torch.utils.data.DataLoader(jobs, batch_size=None, num_workers=workers,
                                         collate_fn=lambda x: x)
    t0 = time.perf_counter()
    clips = sum(len(item[1]) for item in loader)
    many = time.perf_counter() - t0
    print(f"  decode (short side {enc.pre.resize}): 1 process {n / one:8.1f} frames/s; "
          f"{workers} workers {n / many:8.1f} frames/s = {clips / many:7.1f} clips/s "
          f"(sampled and cropped, start-up included)")


def bench_encoder(listing: Listing, enc, sampling: Sampling, batch: int, repeats: int) -> float:
    frames, fps = decode_video(listing.items[0].path, enc.pre.resize)
    idx, _ = clip_indices(len(frames), sampling, fps)
    clips = torch.from_numpy(enc.crop(frames)[idx])
    clips = clips[torch.arange(batch) % len(clips)].contiguous()
    enc(clips)                                              # warm-up
    sync(enc)
    t0 = time.perf_counter()
    for _ in range(repeats):
        enc(clips)
    sync(enc)
    rate = batch * repeats / (time.perf_counter() - t0)
    print(f"  encoder only: {rate:8.1f} clips/s (batch {batch}, {repeats} calls)")
    return rate


def sync(enc) -> None:
    if enc.device.type == "cuda":
        torch.cuda.synchronize(enc.device)


def bench_end_to_end(listing, enc, sampling, batch, workers, out: Path) -> float:
    opts = Options(out, batch_clips=batch, workers=workers, progress=False)
    logs = []
    t0 = time.perf_counter()
    extract(listing, enc, sampling, opts, log=logs.append)
    sync(enc)
    wall = time.perf_counter() - t0
    clips = sum(len(torch.load(p, weights_only=True)) for p in (out / "feats").glob("*.pt"))
    rate = clips / wall
    print(f"  end to end: {rate:8.1f} clips/s ({clips} clips of {len(listing.items)} videos in "
          f"{wall:.1f} s, {workers} decode workers, files written)")
    return rate


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoders", default="torchvision:r2plus1d_18,videomae",
                    help="comma-separated: any encoder spec, or videomae (default: %(default)s)")
    ap.add_argument("--videomae", choices=sorted(VIDEOMAE), default="small",
                    help="size of the videomae row (default: %(default)s)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", choices=("none", "float16", "bfloat16"), default="none")
    ap.add_argument("--batch-clips", type=int, default=8, help="clips per encoder call")
    ap.add_argument("--workers", type=int, default=2, help="decode worker processes")
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3, help="encoder calls per round")
    ap.add_argument("--rounds", type=int, default=3, help="alternations of encoder-only and end to end")
    args = ap.parse_args(argv)
    amp = {"none": None, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.amp]
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
          f"{os.cpu_count()} CPUs, {load()}")
    tmp = Path(tempfile.mkdtemp(prefix="dejavid_bench_extract_"))
    try:
        listing = make_videos(tmp / "videos", args.videos, args.frames)
        print(f"{args.videos} videos of {args.frames} frames, 320 x 240, H.264 at 30 fps")
        for spec in args.encoders.split(","):
            overrides = {}
            if spec == "videomae":
                spec, overrides = "hf:videomae", VIDEOMAE[args.videomae]
            try:
                enc = build_encoder(spec, random_init=True, overrides=overrides)
            except MissingDependency as exc:
                print(f"\n{spec}: skipped ({exc})")
                continue
            enc.to(torch.device(args.device), amp)
            sampling = Sampling(enc.pre.clip_len, clip_stride=enc.pre.clip_len).check()
            name = spec + (f" ({args.videomae})" if overrides else "")
            print(f"\n{name}: clips of {enc.pre.clip_len} frames at {enc.pre.crop} x {enc.pre.crop}, "
                  f"amp {args.amp}")
            bench_decode(listing, enc, sampling, args.workers)
            only, e2e = [], []
            for _ in range(args.rounds):
                only.append(bench_encoder(listing, enc, sampling, args.batch_clips, args.repeats))
                e2e.append(bench_end_to_end(listing, enc, sampling, args.batch_clips, args.workers,
                                            tmp / f"out-{len(os.listdir(tmp))}"))
            only, e2e = statistics.median(only), statistics.median(e2e)
            print(f"HEADLINE {name} on {args.device}: encoder {only:.1f} clips/s, end to end "
                  f"{e2e:.1f} clips/s = {100 * e2e / only:.0f}% of encoder-only ({load()})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
