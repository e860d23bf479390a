"""torchrun with 2 CPU processes (gloo) equals one process with the same global batch."""
from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT
from dejavid.distributed import DistInfo, shard


def test_shard_covers_each_position_once():
    for n in (0, 1, 5, 8, 13):
        for w in (1, 2, 3, 4):
            parts = [shard(list(range(n)), DistInfo(r, w)) for r in range(w)]
            assert sum(parts, []) == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def _write_dataset(root):
    """3 classes, 41 train videos (the last global batch of 8 holds one video, so one rank
    gets none) and 31 val videos (odd: a padded sampler would count one twice)."""
    g = torch.Generator().manual_seed(0)
    (root / "f").mkdir(parents=True)
    splits, labels, fnames = {}, {}, {}
    for n in range(72):
        vid = f"v{n:03d}"
        lab = n % 3
        T = int(torch.randint(2, 12, (1,), generator=g))
        x = torch.randn(T, 5, generator=g) + lab * torch.linspace(-1, 1, T)[:, None]
        torch.save(x, root / "f" / f"{vid}.pt")
        splits[vid], labels[vid], fnames[vid] = ("train" if n < 41 else "val"), lab, f"f/{vid}.pt"
    for name, m in (("id2splits", splits), ("id2labels", labels), ("id2fname", fnames)):
        with open(root / f"{name}.pkl", "wb") as fh:
            pickle.dump(m, fh)
    cfg = root / "tiny.yaml"
    cfg.write_text("\n".join([
        f"id2feats: {root}", f"id2splits: {root / 'id2splits.pkl'}",
        f"id2labels: {root / 'id2labels.pkl'}", f"id2fname: {root / 'id2fname.pkl'}",
        "num_timesteps: 4", "sample_size_per_class: 5", "dba_max_iter: 3", "num_epochs: 2",
        "batch_size: 8", "eval_batch_size: 4", "lr: 0.05", f"cache_dir: {root / 'cache'}",
        f"output_dir: {root / 'runs'}", "device: cpu"]) + "\n")
    return cfg


def _run(cmd, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout + res.stderr


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_torchrun_two_ranks_equals_single_process(tmp_path):
    cfg = _write_dataset(tmp_path)
    train = str(ROOT / "train_dejavid.py")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(29500 + os.getpid() % 1000)]
    _run([sys.executable, train, "--config", str(cfg), "--run_name", "single", "--no-progress"], ROOT)
    out = _run(torchrun + [train, "--config", str(cfg), "--run_name", "ddp", "--no-progress"], ROOT)
    assert "2 process(es)" in out

    a = torch.load(tmp_path / "runs" / "single" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "runs" / "ddp" / "last.pt", weights_only=False)
    for key in ("mu", "theta"):
        diff = (a["model"][key] - b["model"][key]).abs().max().item()
        print(key, "max diff", diff)
        assert diff < 1e-5
    for ra, rb in zip(a["history"], b["history"], strict=True):
        for k in ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5"):
            assert ra[k] == pytest.approx(rb[k], abs=1e-5), (k, ra, rb)

    # Evaluation under torchrun counts each of the 31 val videos exactly once.
    ck = str(tmp_path / "runs" / "ddp" / "last.pt")
    one = _run([sys.executable, train, "--eval-only", "--checkpoint", ck, "--no-progress"], ROOT)
    two = _run(torchrun + [train, "--eval-only", "--checkpoint", ck, "--no-progress"], ROOT)
    pat = re.compile(r"\((\d+) videos\): loss ([\d.]+) top1 ([\d.]+) top5 ([\d.]+)")
    assert pat.search(one).groups() == pat.search(two).groups()
    assert pat.search(two).group(1) == "31"


def test_global_batch_must_divide_by_world_size(tmp_path):
    cfg = _write_dataset(tmp_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "3",
                "--master_port", str(30500 + os.getpid() % 1000)]
    res = subprocess.run(torchrun + [str(ROOT / "train_dejavid.py"), "--config", str(cfg),
                                     "--no-progress"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode != 0
    assert "must divide by the number of processes (3)" in res.stdout + res.stderr


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_run_stopped_under_torchrun_resumes_in_one_process(tmp_path):
    """A 2-rank run stopped by SIGTERM (to torchrun, which forwards it) writes a checkpoint;
    resumed by a single process it ends where an uninterrupted single-process run ends."""
    cfg = _write_dataset(tmp_path)
    train = str(ROOT / "train_dejavid.py")
    # Batches of 2 (1 per rank): 21 steps an epoch, so the signal lands inside the run;
    # few epochs, so that DDP's float summation order moves the weights by < 1e-5.
    epochs = ["--num_epochs", "6", "--batch_size", "2", "--no-progress"]
    _run([sys.executable, train, "--config", str(cfg), "--run_name", "single", *epochs], ROOT)

    run = tmp_path / "runs" / "ddp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(31500 + os.getpid() % 1000)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(torchrun + [train, "--config", str(cfg), "--run_name", "ddp", *epochs],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    t0 = time.time()
    while not (run / "last.pt").exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() - t0 < 300, "timed out waiting for the first checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0, "the run ended before the signal: nothing was resumed\n" + out
    assert f"--resume {run}" in out, out

    resumed = _run([sys.executable, train, "--resume", str(run), "--no-progress"], ROOT)
    assert "resuming at epoch" in resumed and "1 process(es)" in resumed
    print([l for l in resumed.splitlines() if "resuming" in l])
    a = torch.load(tmp_path / "runs" / "single" / "last.pt", weights_only=False)
    b = torch.load(run / "last.pt", weights_only=False)
    for key in ("mu", "theta"):
        diff = (a["model"][key] - b["model"][key]).abs().max().item()
        print(key, "max diff", diff)
        assert diff < 1e-5
    assert len(a["history"]) == len(b["history"]) == 6
    for ra, rb in zip(a["history"], b["history"]):
        for k in ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5"):
            assert ra[k] == pytest.approx(rb[k], abs=1e-5), (k, ra, rb)
