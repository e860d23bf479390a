"""Generate the offline video demo: classes that differ only in the order of events.

    python prepare_video_demo.py [--out data/video_demo] [--train-per-class 20]
                                 [--val-per-class 10] [--size 64] [--seed 0]

Three coloured squares (red, green, blue) appear one after another on a noisy
background; each of the 3! = 6 orders is a class (``red-green-blue``, ...).  Everything
else is drawn at random, independently of the class: each square's position, size and
duration (so the video's length), the gaps between events, the frame rate, the
background's grey level and noise.  Every class therefore shows the same frames on
average: a classifier that averages clip embeddings over time sees the same mean for
every class (chance, 1/6), while the order is there for one that keeps time.

The gaps between two squares are at least ``--min-gap`` frames (default 10), more than
the 8-frame clips the demo extracts, so that no clip holds two events (and with it a
piece of the order).

Written (nothing is downloaded):

    OUT/videos/<class>/<id>.mp4     one MPEG-4 video per sample (PyAV), written atomically
    OUT/manifest.csv                path,label,split (paths relative to OUT)

The manifest is one of the layouts extract_tse.py reads; the class folders are the
other.
"""
from __future__ import annotations

import argparse
import csv
import io
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dejavid.config import cli
from dejavid.errors import MissingDependency
from dejavid.io import atomic_path, atomic_write_text

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 70, 230)}
ORDERS = list(itertools.permutations(COLOURS))
CLASSES = ["-".join(order) for order in ORDERS]
FPS_CHOICES = (12, 15, 20)


@dataclass(frozen=True)
class Design:
    """The random ranges of one data set (frames unless named otherwise)."""
    size: int = 64
    min_event: int = 8
    max_event: int = 20
    min_gap: int = 10
    max_gap: int = 16
    max_lead: int = 8          # noise-only frames before the first / after the last event


def _av():
    try:
        import av
    except ImportError as exc:
        raise MissingDependency("the video demo needs PyAV: pip install av "
                                "(or pip install -e '.[extract]')") from exc
    return av


def frames_of(order: tuple[str, ...], rng: np.random.Generator, design: Design) -> np.ndarray:
    """uint8 [T, H, W, 3] frames of one video showing the squares in ``order``."""
    S = design.size
    segments = [("lead", int(rng.integers(0, design.max_lead + 1)))]
    for n, colour in enumerate(order):
        if n:
            segments.append(("gap", int(rng.integers(design.min_gap, design.max_gap + 1))))
        segments.append((colour, int(rng.integers(design.min_event, design.max_event + 1))))
    segments.append(("tail", int(rng.integers(0, design.max_lead + 1))))
    T = sum(n for _, n in segments)
    level = rng.uniform(70, 140)
    noise = rng.uniform(2, 6)
    # Noise in 4x4-pixel blocks: random texture that MPEG-4 still compresses well.
    blocks = rng.standard_normal((T, -(-S // 4), -(-S // 4), 1))
    grain = blocks.repeat(4, axis=1).repeat(4, axis=2)[:, :S, :S]
    frames = np.repeat(np.clip(level + noise * grain, 0, 255), 3, axis=3)
    t = 0
    for what, n in segments:
        if what in COLOURS:
            side = int(rng.integers(S // 4, S // 2 + 1))
            y, x = (int(v) for v in rng.integers(0, S - side + 1, size=2))
            frames[t:t + n, y:y + side, x:x + side, :] = COLOURS[what]
        t += n
    return frames.astype(np.uint8)


def encode(frames: np.ndarray, fps: int) -> bytes:
    """MPEG-4 in an MP4 container, yuv420p, as bytes."""
    av = _av()
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 40_000
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def generate(out: str | Path, train_per_class: int = 20, val_per_class: int = 10,
             seed: int = 0, design: Design = Design(), progress: bool = True) -> list[dict]:
    """Write the videos and the manifest under ``out``; returns the manifest's rows."""
    if train_per_class < 1 or val_per_class < 1:
        raise ValueError("--train-per-class and --val-per-class must be at least 1")
    if design.size < 16:
        raise ValueError(f"--size must be at least 16 pixels, got {design.size}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder (it is created if missing)")
    _av()
    from tqdm import tqdm
    rng = np.random.default_rng(seed)
    rows = []
    jobs = [(split, c, n) for split, per in (("train", train_per_class), ("val", val_per_class))
            for n in range(per) for c in range(len(CLASSES))]
    for split, c, n in tqdm(jobs, desc="videos", unit="video", disable=not progress):
        rel = f"videos/{CLASSES[c]}/{split}_{n:03d}.mp4"
        data = encode(frames_of(ORDERS[c], rng, design), int(rng.choice(FPS_CHOICES)))
        with atomic_path(out / rel) as tmp:
            tmp.write_bytes(data)
        rows.append({"path": rel, "label": CLASSES[c], "split": split})
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["path", "label", "split"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(text.getvalue(), out / "manifest.csv")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="data/video_demo")
    ap.add_argument("--train-per-class", type=int, default=20)
    ap.add_argument("--val-per-class", type=int, default=10)
    ap.add_argument("--size", type=int, default=64, help="frame height and width (pixels)")
    ap.add_argument("--min-gap", type=int, default=Design.min_gap,
                    help="fewest noise-only frames between two events")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    design = Design(size=args.size, min_gap=args.min_gap,
                    max_gap=max(args.min_gap, Design.max_gap))
    rows = generate(args.out, args.train_per_class, args.val_per_class, args.seed, design,
                    progress=not args.no_progress)
    n_train = sum(r["split"] == "train" for r in rows)
    print(f"video demo: {n_train} train / {len(rows) - n_train} val videos, "
          f"{len(CLASSES)} classes (orders of {', '.join(COLOURS)}) -> {Path(args.out) / 'manifest.csv'}")
    return 0


if __name__ == "__main__":
    cli.main_guard(main)
