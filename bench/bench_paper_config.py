"""Dress rehearsal of the paper's HMDB51 command on synthetic data of the real shapes.

    python bench/bench_paper_config.py --epochs 2                 # as recorded in RESULTS.md
    python bench/bench_paper_config.py --videos 600 --epochs 1    # smoke test (~0.1 GB)

Writes a synthetic data set with HMDB51's shapes to ``--data`` (default
/tmp/dejavid-hmdb51-rehearsal, about 1.15 GB): 6766 videos, T drawn uniformly from
25..33 (mean 29) steps, F = 1459 = 1408 embedding columns + 51 logit columns, 51
classes (video n has class n mod 51), 70/30 train/val split within each class.  The
embedding of a class-c video follows a straight line between two class points (N(0, 0.03^2)
per column, so the order of the steps carries the class) plus N(0, 1) noise; its logit columns
are a per-video N(0, 1) offset per class, N(0, 0.5) noise per step, and +3 on the true
class, so the clip-averaged logits are right for most videos but not all.

Then runs the user's command, as a subprocess, with the data paths overridden:

    DEJAVID_TIMING=1 python reproduce.py --config configs/hmdb51.yaml --id2feats ... \
        --num_epochs N --methods ... --out <data>/reproduce --cache_dir <data>/cache

with the config's published K = 8 and batch 384; ``--epochs`` replaces its 36 epochs
(the per-epoch cost does not depend on the count).  1-NN DTW is left out by default
(``--methods``): it aligns every validation video to every training video (4736 x 2030
pairs), the row docs/paper.md tells users to leave out on large data sets.

Reports the wall time of each stage (data generation, data check, each row; per
DejaVid run the centroids and, per epoch, data loading, forward, backward, optimizer
and evaluation, from the runs' timing.jsonl), the peak resident memory of the child
processes (ru_maxrss), an extrapolation of the DejaVid runs to 36 epochs, and the
table.  Deletes the data afterwards unless ``--keep``.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
HMDB51 = {"videos": 6766, "C": 51, "embed": 1408, "T": (25, 33), "train_share": 0.7}
DEFAULT_METHODS = "encoder_logits,meanpool_lr,dejavid_centroids,dejavid_weights,dejavid,dba_centroid"
STAGES = ("data", "forward", "backward", "optimizer", "eval")


def write_dataset(root: Path, videos: int, seed: int) -> dict[str, Path]:
    """The four inputs of a synthetic HMDB51-shaped data set under ``root``."""
    C, E, (t_lo, t_hi) = HMDB51["C"], HMDB51["embed"], HMDB51["T"]
    g = torch.Generator().manual_seed(seed)
    # Weak class signal (0.03 per column against N(0, 1) noise), so that not every row is perfect.
    start, end = (0.03 * torch.randn(C, E, generator=g) for _ in range(2))        # [C, E]
    feats = root / "feats"
    feats.mkdir(parents=True, exist_ok=True)
    labels = {f"v{n:05d}": n % C for n in range(videos)}
    order = torch.randperm(videos, generator=g).tolist()
    splits, seen, per_class = {}, [0] * C, [sum(1 for n in range(videos) if n % C == c)
                                            for c in range(C)]
    for n in order:   # the first 70 % of each class's videos (in random order) train
        vid, c = f"v{n:05d}", n % C
        splits[vid] = "train" if seen[c] < round(HMDB51["train_share"] * per_class[c]) else "val"
        seen[c] += 1
    for n in range(videos):
        vid, c = f"v{n:05d}", n % C
        T = int(torch.randint(t_lo, t_hi + 1, (1,), generator=g))
        s = torch.linspace(0.0, 1.0, T)[:, None]                                  # [T, 1]
        embed = start[c] + (end[c] - start[c]) * s + torch.randn(T, E, generator=g)
        logits = torch.randn(C, generator=g) + 0.5 * torch.randn(T, C, generator=g)  # [T, C]
        logits[:, c] += 3.0
        torch.save(torch.cat([embed, logits], 1).contiguous(), feats / f"{vid}.pt")
    paths = {"id2feats": feats}
    for key, mapping in (("id2splits", splits), ("id2labels", labels),
                         ("id2fname", {v: f"{v}.pt" for v in labels})):
        paths[key] = root / f"{key}.pkl"
        with open(paths[key], "wb") as fh:
            pickle.dump(mapping, fh)
    return paths


def fmt(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s:.0f} s ({s / 60:.1f} min)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="/tmp/dejavid-hmdb51-rehearsal",
                   help="folder for the synthetic data, the cache and the reproduce folder")
    p.add_argument("--videos", type=int, default=HMDB51["videos"])
    p.add_argument("--epochs", type=int, default=36, help="epochs per DejaVid run (paper: 36)")
    p.add_argument("--methods", default=DEFAULT_METHODS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="keep the data folder afterwards")
    args = p.parse_args()
    data = Path(args.data)
    if data.exists():
        raise SystemExit(f"error: {data} exists; remove it or choose another --data")
    mean_T = sum(HMDB51["T"]) / 2
    need = args.videos * mean_T * (HMDB51["embed"] + HMDB51["C"]) * 4
    free = shutil.disk_usage(data.parent).free
    if free < 1.5 * need:
        raise SystemExit(f"error: {data.parent} has {free / 2**30:.1f} GiB free; the data "
                         f"needs about {need / 2**30:.2f} GiB (choose another --data)")
    print(f"synthetic HMDB51-shaped data: {args.videos} videos, T {HMDB51['T'][0]}.."
          f"{HMDB51['T'][1]}, F {HMDB51['embed'] + HMDB51['C']} = {HMDB51['embed']} + "
          f"{HMDB51['C']} logits, C {HMDB51['C']}, ~{need / 2**30:.2f} GiB in {data}", flush=True)
    try:
        t0 = time.time()
        paths = write_dataset(data, args.videos, args.seed)
        gen_s = time.time() - t0
        size = sum(f.stat().st_size for f in paths["id2feats"].iterdir())
        print(f"data written in {fmt(gen_s)} ({size / 2**30:.2f} GiB)", flush=True)
        out = data / "reproduce"
        cmd = [sys.executable, "reproduce.py", "--config", "configs/hmdb51.yaml",
               *(x for k, v in paths.items() for x in (f"--{k}", str(v))),
               "--num_epochs", str(args.epochs), "--methods", args.methods,
               "--out", str(out), "--cache_dir", str(data / "cache"), "--no-progress"]
        print("command: DEJAVID_TIMING=1 " + " ".join(cmd), flush=True)
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "DEJAVID_TIMING": "1"},
                              capture_output=True, text=True)
        wall = time.time() - t0
        (data / "reproduce.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode:
            print(proc.stdout[-3000:] + proc.stderr[-3000:])
            raise SystemExit(f"reproduce.py exited with {proc.returncode}")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024   # KiB -> MiB
        report(out, gen_s, wall, peak, args.epochs)
    finally:
        if not args.keep and data.exists():
            shutil.rmtree(data)
            print(f"deleted {data}")
    return 0


def report(out: Path, gen_s: float, wall: float, peak_mib: float, epochs: int) -> None:
    """Print the stage times, the peak memory, the 36-epoch extrapolation and the table."""
    rows = json.loads((out / "timing.json").read_text())
    print(f"\nreproduce.py wall time {fmt(wall)}; peak RSS of the child processes "
          f"(ru_maxrss, the largest one) {peak_mib:.0f} MiB")
    print(f"stage               seconds\ndata generation     {gen_s:8.1f}  (bench only)")
    for name, s in rows.items():
        print(f"{name:<19} {s:8.1f}")
    per_epoch_all = []
    for run in (out / m / "timing.jsonl" for m in rows if (out / m / "timing.jsonl").is_file()):
        lines = [json.loads(x) for x in run.read_text().splitlines()]
        setup = [r for r in lines if "before_epoch" in r]
        eps = [r for r in lines if "epoch" in r]
        print(f"\n{run.parent.name}: centroids (computed or read from the cache) "
              f"{sum(r.get('centroids', 0.0) for r in setup):.1f} s")
        print("epoch " + "".join(f"{s:>10}" for s in (*STAGES, "other", "total")))
        for r in eps:
            other = r["epoch_seconds"] - sum(r.get(s, 0.0) for s in STAGES)
            print(f"{r['epoch']:>5} " + "".join(f"{r.get(s, 0.0):10.1f}" for s in STAGES)
                  + f"{other:10.1f}{r['epoch_seconds']:10.1f}")
        per_epoch_all.append(sum(r["epoch_seconds"] for r in eps) / len(eps))
    if per_epoch_all:
        mean = sum(per_epoch_all) / len(per_epoch_all)
        print(f"\nmean epoch over the {len(per_epoch_all)} DejaVid runs: {mean:.1f} s; "
              f"extrapolated (not measured) to 36 epochs: {fmt(36 * mean)} per run, "
              f"{fmt(36 * sum(per_epoch_all))} for the {len(per_epoch_all)} runs "
              f"(measured here: {epochs} epochs each)")
    print("\n" + (out / "results.md").read_text())


if __name__ == "__main__":
    sys.exit(main())
