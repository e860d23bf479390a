"""torchrun with 2 CPU processes (gloo) equals one process with the same global batch."""
from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys
import pytest
import torch

from conftest import ROOT
from dejavid.training.distributed import DistInfo, shard
from dejavid.training.signals import StopRequest


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


def _torchrun(nproc: int) -> list[str]:
    # --standalone picks a free port itself: fixed ports collide with a previous run's
    # socket or with another test session on the same machine.
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(nproc)]


def _run(cmd, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout + res.stderr


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_torchrun_two_ranks_equals_single_process(tmp_path):
    cfg = _write_dataset(tmp_path)
    train = str(ROOT / "train_dejavid.py")
    torchrun = _torchrun(2)
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
    torchrun = _torchrun(3)
    res = subprocess.run(torchrun + [str(ROOT / "train_dejavid.py"), "--config", str(cfg),
                                     "--no-progress"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode != 0
    assert "must divide by the number of processes (3)" in res.stdout + res.stderr


def _params_and_history(path):
    ck = torch.load(path, weights_only=False)
    return ck["model"], ck["history"]


# Largest |difference| in mu and theta between a 2-rank run stopped after step 30 and resumed
# by one process, and an uninterrupted single-process run (3 epochs of 21 steps).  It comes
# only from DDP's gradient summation order in the 30 two-rank steps.  Measured on AMD EPYC
# (znver4) with the numba kernels at 256-bit (default there) and at 512-bit vectors
# (DEJAVID_NUMBA_512=1, the code Intel Sapphire Rapids and later get): see the note in the
# README's torchrun section.  The bound keeps a margin of about 10x over the largest.
WORLD_SIZE_CHANGE_BOUND = 1e-4
STOP_AFTER = 30


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_run_stopped_under_torchrun_resumes_exactly(tmp_path):
    """A 2-rank run stopped after a chosen step (DEJAVID_STOP_AFTER_STEPS, handled like a
    SIGTERM) and resumed with 2 ranks ends bitwise where an uninterrupted 2-rank run ends.
    The same checkpoint resumed by a single process finishes, close to a single-process run."""
    cfg = _write_dataset(tmp_path)
    train = str(ROOT / "train_dejavid.py")
    # Batches of 2 (1 per rank): 21 steps an epoch; the stop lands in epoch 2, step 9.
    epochs = ["--num_epochs", "3", "--batch_size", "2", "--no-progress"]
    torchrun = _torchrun(2)
    runs = tmp_path / "runs"
    _run(torchrun + [train, "--config", str(cfg), "--run_name", "ddp_full", *epochs], ROOT)

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               DEJAVID_STOP_AFTER_STEPS=str(STOP_AFTER))
    res = subprocess.run(torchrun + [train, "--config", str(cfg), "--run_name", "ddp", *epochs],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    out = res.stdout + res.stderr
    assert res.returncode != 0, "the run was not stopped\n" + out
    assert "stopped by DEJAVID_STOP_AFTER_STEPS in epoch 2 after 9 steps" in out, out
    assert f"--resume {runs / 'ddp'}" in out, out
    shutil.copytree(runs / "ddp", runs / "ddp_then_single")

    resumed = _run(torchrun + [train, "--resume", str(runs / "ddp"), "--no-progress"], ROOT)
    assert "resuming at epoch 2, step 9" in resumed and "2 process(es)" in resumed, resumed
    full, full_hist = _params_and_history(runs / "ddp_full" / "last.pt")
    again, again_hist = _params_and_history(runs / "ddp" / "last.pt")
    for key in ("mu", "theta"):
        assert torch.equal(full[key], again[key]), key
    untimed = lambda hist: [{k: v for k, v in row.items() if k != "seconds"} for row in hist]
    assert untimed(full_hist) == untimed(again_hist)

    # Another world size: the run finishes, and ends near a single-process run.
    _run([sys.executable, train, "--config", str(cfg), "--run_name", "single", *epochs], ROOT)
    single = _run([sys.executable, train, "--resume", str(runs / "ddp_then_single"),
                   "--no-progress"], ROOT)
    assert "resuming at epoch 2, step 9" in single and "1 process(es)" in single, single
    a, a_hist = _params_and_history(runs / "single" / "last.pt")
    b, b_hist = _params_and_history(runs / "ddp_then_single" / "last.pt")
    for key in ("mu", "theta"):
        diff = (a[key] - b[key]).abs().max().item()
        print(key, "max diff after a world-size change", diff)
        assert diff < WORLD_SIZE_CHANGE_BOUND, key
    assert len(a_hist) == len(b_hist) == 3
    for ra, rb in zip(a_hist, b_hist):
        for k in ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5"):
            assert ra[k] == pytest.approx(rb[k], abs=WORLD_SIZE_CHANGE_BOUND), (k, ra, rb)


@pytest.mark.parametrize("value", ["x", "0", "-3"])
def test_stop_after_steps_rejects_bad_values(value):
    with pytest.raises(ValueError, match="DEJAVID_STOP_AFTER_STEPS"):
        StopRequest({"DEJAVID_STOP_AFTER_STEPS": value})


def test_stop_after_steps_requests_a_stop_at_that_step():
    stop = StopRequest({"DEJAVID_STOP_AFTER_STEPS": "3"})
    seen = []
    for _ in range(5):
        stop.step_done()
        seen.append(stop.requested)
    assert seen == [None, None, "DEJAVID_STOP_AFTER_STEPS"] + ["DEJAVID_STOP_AFTER_STEPS"] * 2
    idle = StopRequest({})
    for _ in range(5):
        idle.step_done()
    assert idle.requested is None
