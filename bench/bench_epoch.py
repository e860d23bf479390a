"""Time one HMDB51-shaped training epoch and its validation pass on synthetic data.

    python bench/bench_epoch.py --device cuda --num_timesteps 8
    python bench/bench_epoch.py --device cpu --num_timesteps 8 --warmup-epochs 1
    python bench/bench_epoch.py --device cpu --scale 0.01      # smoke test

Synthetic videos of the real sizes, held in memory: 3570 train / 1530 val
(times ``--scale``), T drawn uniformly from 25..41 (mean 33), features = class
prototype + noise; F, C, K and the settings (fixed paths, step pattern, AdamW,
batch 384) come from ``--config`` (default configs/hmdb51.yaml), K overridden by
``--num_timesteps``.  The work is the training script's: ``model.snapshot()``,
``engine.train_one_epoch``, ``scheduler.step()``, ``engine.evaluate``.
Centroids start from the prototypes plus noise instead of DBA (their values do
not change the cost of an epoch).  Data generation and a warm-up step (JIT
compilation, CUDA context) are outside the timings; ``--warmup-epochs`` runs
whole untimed epochs first (allocator and caches settle; the model trains on).

Each epoch also prints where its time went: the backend's four calls (free-path
forward, path cost, path gradients), batch assembly (the collate function),
the optimizer step, the rest of the train pass (loss, autograd, loader), and
the evaluation pass; taken by wrapping those functions with timers (CUDA calls
synchronised before and after, so GPU stages are timed, at a small cost).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dejavid.runtime  # noqa: E402,F401  (before torch and numba, as the entry scripts)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

import dejavid.alignment.op as dispatch  # noqa: E402
import dejavid.training.batching as batching  # noqa: E402
from dejavid.alignment.op import get_backend  # noqa: E402
from dejavid.alignment.backend import Backend  # noqa: E402
from dejavid.config.files import load_config, step_pattern  # noqa: E402
from dejavid.data.dataset import Batch  # noqa: E402
from dejavid.training.engine import evaluate, train_one_epoch  # noqa: E402
from dejavid.model.layer import DejaVid, loss_fn  # noqa: E402
from dejavid.training.optim import build_optimizer, build_scheduler  # noqa: E402
from dejavid.data.packing import RowSource, gather  # noqa: E402
from dejavid.config.settings import band_of, settings_from_config  # noqa: E402

HMDB51 = {"train": 3570, "val": 1530, "F": 1459, "C": 51, "T": (25, 41)}


class SyntheticVideos(Dataset):
    """In-memory videos; item -> (x [T, F] float32, label, row), like dejavid.data.dataset.TSEDataset
    with ``in_memory`` (one [N, F] array, batches gathered from it)."""

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

    def batch(self, positions) -> Batch:
        """One gather of rows, as TSEDataset does for a split held in memory."""
        rows = RowSource(self.x.numpy(), "float32", self.offsets[:-1].numpy(),
                         self.lengths.numpy().astype(np.int64))
        x, offsets = gather(rows, positions)
        k = torch.as_tensor(positions, dtype=torch.int64)
        return Batch(x, offsets, self.labels[k], k)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


class StageTimer:
    """Seconds and calls per (phase, stage), filled by the wrappers :meth:`install` puts
    around the backend's calls, the collate function and the optimizer step."""

    def __init__(self, device):
        self.device = device
        self.phase = "setup"
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)

    def reset(self):
        self.seconds.clear()
        self.calls.clear()

    @contextmanager
    def stage(self, name):
        _sync(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            _sync(self.device)
            self.seconds[self.phase, name] += time.perf_counter() - t0
            self.calls[self.phase, name] += 1

    def wrap(self, fn, name):
        def timed(*args, **kwargs):
            with self.stage(name):
                return fn(*args, **kwargs)
        return timed

    def install(self, optimizer):
        """Time every backend call the model makes, collate and optimizer.step."""
        timed = {}
        pick = dispatch.get_backend

        def get_timed_backend(device, name="auto"):
            be = pick(device, name)
            if be.name not in timed:
                timed[be.name] = Backend(be.name, self.wrap(be.align_forward, "forward"),
                                         self.wrap(be.path_cost, "path cost"),
                                         self.wrap(be.path_grads, "path grads"),
                                         self.wrap(be.dba_accumulate, "dba"))
            return timed[be.name]

        dispatch.get_backend = get_timed_backend
        # The loader built by batching.make_loader asks batching._Batches for each batch
        # (the dataset's gather of rows, or collate_packed); with --num-workers > 0 that
        # runs in the workers and is not seen here.
        batching._Batches.__getitem__ = self.wrap(batching._Batches.__getitem__, "batch assembly")
        t0 = [0.0]

        def pre(*_):
            _sync(self.device)
            t0[0] = time.perf_counter()

        def post(*_):
            _sync(self.device)
            self.seconds[self.phase, "optimizer"] += time.perf_counter() - t0[0]
            self.calls[self.phase, "optimizer"] += 1

        optimizer.register_step_pre_hook(pre)
        optimizer.register_step_post_hook(post)

    def report(self, phase, total):
        """Lines 'stage  seconds  share  calls' for one phase, the rest as 'other'."""
        rows = [(name, sec, self.calls[ph, name]) for (ph, name), sec in self.seconds.items()
                if ph == phase]
        rows.sort(key=lambda r: -r[1])
        rows.append(("other", total - sum(r[1] for r in rows), 0))
        return [f"  {phase:5s} {name:15s} {sec:8.3f} s {100 * sec / total:5.1f} %"
                + (f"  ({n} calls)" if n else "") for name, sec, n in rows]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backend", default="auto", choices=("auto", "ref", "numba", "cuda"))
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the HMDB51 video counts")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, help="default: the config's (384)")
    p.add_argument("--config", default=str(ROOT / "configs" / "hmdb51.yaml"),
                   help="settings, F and C (default configs/hmdb51.yaml); video counts and "
                        "lengths stay HMDB51's")
    p.add_argument("--num_timesteps", "--num-timesteps", type=int,
                   help="K, overrides the config's")
    p.add_argument("--warmup-epochs", type=int, default=0,
                   help="untimed whole epochs before the timed ones")
    p.add_argument("--centroids-per-class", type=int, default=1,
                   help="M prototype series per class (soft minimum over them)")
    p.add_argument("--band", default="none", help="warping band: none or a fraction")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true", help="show tqdm bars")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    overrides = ["--num_workers", str(args.num_workers), "--seed", str(args.seed),
                 "--backend", args.backend]
    if args.batch_size:
        overrides += ["--batch_size", str(args.batch_size)]
    if args.num_timesteps:
        overrides += ["--num_timesteps", str(args.num_timesteps)]
    cfg = load_config(args.config, overrides)
    settings = settings_from_config(cfg)
    F = cfg["feature_size"] or HMDB51["F"]
    C = cfg["num_classes"] or HMDB51["C"]
    K = cfg["num_timesteps"]
    n_train = max(C, round(HMDB51["train"] * args.scale))
    n_val = max(1, round(HMDB51["val"] * args.scale))

    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    protos = torch.randn(C, F, generator=g)
    train_ds = SyntheticVideos(n_train, F, protos, HMDB51["T"], args.seed + 1)
    val_ds = SyntheticVideos(n_val, F, protos, HMDB51["T"], args.seed + 2)
    M = args.centroids_per_class
    proto_class = torch.arange(C).repeat_interleave(M)                     # [C * M]
    mu0 = protos[proto_class][:, None, :] + 0.5 * torch.randn(C * M, K, F, generator=g)
    model = DejaVid(mu0, step_pattern(cfg), cfg["use_fixed_path"], cfg["w_one_init"],
                    cfg["backend"], g, logit_head=cfg["logit_head"],
                    std_eps=cfg["std_eps"], band=band_of(args.band),
                    proto_class=proto_class).to(device)
    optimizer = build_optimizer(model, settings.optim)
    scheduler = build_scheduler(optimizer, settings.optim, settings.loop.num_epochs)
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
        from dejavid.runtime import cpu_tuning
        print(cpu_tuning.describe())
    mean_t = float(train_ds.lengths.float().mean())
    print(f"config {Path(args.config).name}; "
          f"synthetic HMDB51-shaped data: {n_train} train / {n_val} val videos, F {F}, C {C}, "
          f"K {K}, T {HMDB51['T'][0]}..{HMDB51['T'][1]} (mean {mean_t:.1f}), "
          f"batch {cfg['batch_size']}, {'fixed' if cfg['use_fixed_path'] else 'free'} path, "
          f"step {step_pattern(cfg)}; data + model setup {setup_s:.1f} s")
    steps = -(-n_train // cfg["batch_size"])
    timer = StageTimer(device)
    timer.install(optimizer)

    def train(epoch):
        timer.phase = "train"
        if model.fixed_path:
            model.snapshot()
        run = train_one_epoch(model, train_ds, optimizer, settings.loop, device, epoch,
                              progress=args.progress)
        scheduler.step()
        return run

    def val():
        timer.phase = "eval"
        return evaluate(model, val_ds, settings.loop, device, progress=args.progress)

    for epoch in range(args.warmup_epochs):
        train(epoch)
        val()
        print(f"warm-up epoch {epoch + 1} done (untimed)")
    for epoch in range(args.warmup_epochs, args.warmup_epochs + args.epochs):
        timer.reset()
        cpu0 = time.process_time()
        running, train_s = _timed(lambda: train(epoch), device)
        # CPU seconds of all threads: unlike wall time, not stretched by other processes
        # taking turns on the cores (a shared machine), still by their cache traffic
        train_cpu_s = time.process_time() - cpu0
        res, val_s = _timed(val, device)
        row = {"epoch": epoch + 1, "device": str(device), "backend": backend,
               "train_videos": n_train, "val_videos": n_val, "batch_size": cfg["batch_size"],
               "train_s": train_s, "train_cpu_s": train_cpu_s, "val_s": val_s,
               "epoch_s": train_s + val_s,
               "train_loss": running.loss_sum / running.count,
               "val_loss": res["loss"], "val_top1": res["top1"]}
        row["stages"] = {f"{ph} {name}": round(sec, 4) for (ph, name), sec in timer.seconds.items()}
        print(f"epoch {epoch + 1}: train {train_s:.2f} s ({train_cpu_s:.2f} s CPU, {steps} steps, "
              f"{n_train / train_s:.0f} videos/s), val {val_s:.2f} s "
              f"({n_val / val_s:.0f} videos/s), epoch {train_s + val_s:.2f} s; "
              f"train loss {row['train_loss']:.4f}, val@1 {res['top1']:.4f}")
        print("\n".join(timer.report("train", train_s) + timer.report("eval", val_s)))
        sec = timer.seconds
        if sec.get(("train", "forward")):
            # the forward's local cost: 3 flops (subtract, abs, multiply-add) per (i, j, f)
            fwd_gflop = 3 * K * F * C * float(train_ds.lengths.sum()) / 1e9
            ratio = (sec.get(("train", "path cost"), 0.0)
                     + sec.get(("train", "path grads"), 0.0)) / sec["train", "forward"]
            print(f"  train forward {fwd_gflop / sec['train', 'forward']:.0f} GFLOP/s "
                  f"({fwd_gflop:.0f} GFLOP of local cost); (path cost + path grads) / forward "
                  f"= {ratio:.2f}")
        print("RESULT " + json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
