"""Time one HMDB51-shaped training epoch and its validation pass on synthetic data.

    python bench/bench_epoch.py --device cuda
    python bench/bench_epoch.py --device cpu --scale 0.01      # smoke test

Synthetic videos of the real sizes, held in memory: 3570 train / 1530 val
(times ``--scale``), F 1459, C 51, K 64, T drawn uniformly from 25..41 (mean
33), features = class prototype + noise.  The settings are configs/hmdb51.yaml
(fixed paths, step pattern hv, AdamW, batch 384) and the work is the training
script's: ``model.snapshot()``, ``engine.train_one_epoch``, ``scheduler.step()``,
``engine.evaluate``.  Centroids start from the prototypes plus noise instead of
DBA (their values do not change the cost of an epoch).  Data generation and a
warm-up step (JIT compilation, CUDA context) are outside the timings.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dejavid.runtime  # noqa: E402,F401  (before torch and numba, as the entry scripts)
import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from dejavid.alignment import get_backend  # noqa: E402
from dejavid.config import load_config, step_pattern  # noqa: E402
from dejavid.engine import evaluate, train_one_epoch  # noqa: E402
from dejavid.model import DejaVid, loss_fn  # noqa: E402
from dejavid.optim import build_optimizer, build_scheduler  # noqa: E402
from dejavid.settings import settings_from_config  # noqa: E402

HMDB51 = {"train": 3570, "val": 1530, "F": 1459, "C": 51, "K": 64, "T": (25, 41)}


class SyntheticVideos(Dataset):
    """In-memory videos; item -> (x [T, F] float32, label, row), like dejavid.data.TSEDataset."""

    def __init__(self, n: int, F: int, protos: torch.Tensor, t_range: tuple[int, int], seed: int):
        g = torch.Generator().manual_seed(seed)
        C = protos.shape[0]
        self.lengths = torch.randint(t_range[0], t_range[1] + 1, (n,), generator=g)
        self.labels = torch.arange(n) % C                      # balanced classes
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.int64), self.lengths.cumsum(0)])
        self.x = torch.empty(int(self.offsets[-1]), F)         # [N, F]
        for v in range(n):
            o0, o1 = int(self.offsets[v]), int(self.offsets[v + 1])
            self.x[o0:o1] = protos[self.labels[v]] + torch.randn(o1 - o0, F, generator=g)
        self.index = SimpleNamespace(feature_size=F)           # what the engine reads of it

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, n: int):
        return self.x[self.offsets[n]:self.offsets[n + 1]], int(self.labels[n]), n


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backend", default="auto", choices=("auto", "ref", "numba", "cuda"))
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the HMDB51 video counts")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, help="default: configs/hmdb51.yaml (384)")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true", help="show tqdm bars")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    overrides = ["--num_workers", str(args.num_workers), "--seed", str(args.seed),
                 "--backend", args.backend]
    if args.batch_size:
        overrides += ["--batch_size", str(args.batch_size)]
    cfg = load_config(ROOT / "configs" / "hmdb51.yaml", overrides)
    F, C, K = HMDB51["F"], HMDB51["C"], cfg["num_timesteps"]
    n_train = max(C, round(HMDB51["train"] * args.scale))
    n_val = max(1, round(HMDB51["val"] * args.scale))

    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    protos = torch.randn(C, F, generator=g)
    train_ds = SyntheticVideos(n_train, F, protos, HMDB51["T"], args.seed + 1)
    val_ds = SyntheticVideos(n_val, F, protos, HMDB51["T"], args.seed + 2)
    mu0 = protos[:, None, :] + 0.5 * torch.randn(C, K, F, generator=g)
    model = DejaVid(mu0, step_pattern(cfg), cfg["use_fixed_path"], cfg["w_one_init"],
                    cfg["backend"], g).to(device)
    settings = settings_from_config(cfg)
    optimizer = build_optimizer(model, settings.optim)
    scheduler = build_scheduler(optimizer, settings.optim, cfg["num_epochs"])
    backend = get_backend(device, cfg["backend"]).name
    setup_s = time.perf_counter() - t0

    # Warm-up (JIT, CUDA context and kernel loading) on a few videos, no parameter update.
    warm = [train_ds[n] for n in range(min(4, n_train))]
    x = torch.cat([v[0] for v in warm]).to(device)
    offsets = torch.tensor([0, *torch.tensor([len(v[0]) for v in warm]).cumsum(0).tolist()],
                           device=device)
    loss_fn(model(x, offsets), torch.tensor([v[1] for v in warm], device=device)).backward()
    model.zero_grad(set_to_none=True)
    _sync(device)

    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    print(f"device {device}{gpu}, backend {backend}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads")
    if device.type == "cpu":
        from dejavid import cpu_tuning
        print(cpu_tuning.describe())
    mean_t = float(train_ds.lengths.float().mean())
    print(f"synthetic HMDB51-shaped data: {n_train} train / {n_val} val videos, F {F}, C {C}, "
          f"K {K}, T {HMDB51['T'][0]}..{HMDB51['T'][1]} (mean {mean_t:.1f}), "
          f"batch {cfg['batch_size']}, {'fixed' if cfg['use_fixed_path'] else 'free'} path, "
          f"step {step_pattern(cfg)}; data + model setup {setup_s:.1f} s")
    steps = -(-n_train // cfg["batch_size"])
    for epoch in range(args.epochs):
        def train():
            if model.fixed_path:
                model.snapshot()
            run = train_one_epoch(model, train_ds, optimizer, settings.loop, device, epoch,
                                  progress=args.progress)
            scheduler.step()
            return run

        running, train_s = _timed(train, device)
        res, val_s = _timed(lambda: evaluate(model, val_ds, settings.loop, device, progress=args.progress),
                            device)
        row = {"epoch": epoch + 1, "device": str(device), "backend": backend,
               "train_videos": n_train, "val_videos": n_val, "batch_size": cfg["batch_size"],
               "train_s": train_s, "val_s": val_s, "epoch_s": train_s + val_s,
               "train_loss": running.loss_sum / running.count,
               "val_loss": res["loss"], "val_top1": res["top1"]}
        print(f"epoch {epoch + 1}: train {train_s:.2f} s ({steps} steps, "
              f"{n_train / train_s:.0f} videos/s), val {val_s:.2f} s "
              f"({n_val / val_s:.0f} videos/s), epoch {train_s + val_s:.2f} s; "
              f"train loss {row['train_loss']:.4f}, val@1 {res['top1']:.4f}")
        print("RESULT " + json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
