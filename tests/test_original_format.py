"""Importing the original DejaVid's files: its centroid cache (``pickle.dump`` of a GPU
tensor), its saved model (``k_feats_*.pkl`` + ``feat_log_weights_*.pt``), read on a CPU-only
machine without running anything they hold."""
from __future__ import annotations

import csv
import os
import pickle
import subprocess
import sys
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

import import_original
import train_dejavid
from conftest import ROOT
from dejavid.model.centroids import load_or_compute_centroids
from dejavid.data.dataset import TSEDataset, collate_packed
from dejavid.config.settings import index_from_config, settings_from_config
from dejavid.training.checkpoint import load_checkpoint, restore_model
from dejavid.model.layer import DejaVid
from dejavid.interop.original import (import_centroid_cache, import_checkpoint,
                                     load_original_tensor, parse_cache_name)
from helpers import level_videos, make_config, write_config_yaml, write_dataset

K = 4
SETTINGS = dict(num_timesteps=K, centroid_seed=1337, sample_size_per_class=50, dba_max_iter=100,
                use_mm=0, num_epochs=1, batch_size=6, standardize=False)
CACHE_NAME = f"_cached_median_djv3_{K}_1337_50_100_3_3_mm0.pkl"   # C = 3 classes, F = 3


@contextmanager
def saved_as_if_on_gpu():
    """Make torch.save / pickle.dump write what they write for a tensor on the first GPU.

    Serialising a storage records its device as ``torch.serialization.location_tag(storage)``
    ('cuda:0' for a CUDA storage; the bytes are the same host copy either way).  pickle.dump
    of a tensor reaches it through ``TypedStorage.__reduce__`` -> legacy torch.save of the
    storage, torch.save through its zip writer.  Replacing that one function for the duration
    of the save tags this CPU storage exactly as a GPU one is tagged; nothing else about the
    file changes.  :func:`test_simulation_is_faithful` checks the result fails to load on a
    CPU-only machine the way a real GPU file does.
    """
    real = torch.serialization.location_tag
    torch.serialization.location_tag = lambda storage: "cuda:0"
    try:
        yield
    finally:
        torch.serialization.location_tag = real


def pickle_dump_like_original(t: torch.Tensor, path: Path) -> Path:
    """``pickle.dump(tensor, open(path, 'wb'))`` of a GPU tensor, as main_dist.py and
    engine_dist.py write the centroid cache and k_feats."""
    with saved_as_if_on_gpu(), open(path, "wb") as fh:
        pickle.dump(t, fh)
    return path


def torch_save_like_original(t: torch.Tensor, path: Path) -> Path:
    """``torch.save(tensor, path)`` of a GPU tensor, as engine_dist.py writes the log-weights."""
    with saved_as_if_on_gpu():
        torch.save(t, path)
    return path


class _RunsCommand:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _StorageFromBytes:
    """Pickles as torch.storage._load_from_bytes(payload), the storage call of a real tensor."""

    def __init__(self, payload: bytes):
        self.payload = payload

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.payload,))


class _TensorOf:
    """Pickles as torch._utils._rebuild_tensor_v2 applied to ``storage``."""

    def __init__(self, storage):
        self.storage = storage

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, (self.storage, 0, (1,), (1,), False, OrderedDict()))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("orig"), level_videos({"train": 6, "val": 3}))


# --------------------------------------------------------------------------- loading safely

@pytest.mark.skipif(torch.cuda.is_available(), reason="checks CPU-only behaviour")
def test_simulation_is_faithful(tmp_path):
    t = torch.randn(3, K, 3)
    path = pickle_dump_like_original(t, tmp_path / "c.pkl")
    assert b"cuda:0" in path.read_bytes()
    with pytest.raises(RuntimeError, match="CUDA device"):
        with open(path, "rb") as fh:
            pickle.load(fh)           # what the original (or a plain pickle.load) does
    pt = torch_save_like_original(t, tmp_path / "w.pt")
    with pytest.raises(RuntimeError, match="CUDA device"):
        torch.load(pt, weights_only=True)


def test_gpu_saved_files_load_on_cpu(tmp_path):
    t = torch.randn(3, K, 5)
    got = load_original_tensor(pickle_dump_like_original(t, tmp_path / "c.pkl"))
    assert got.device.type == "cpu" and got.dtype == torch.float32 and torch.equal(got, t)
    assert torch.equal(load_original_tensor(torch_save_like_original(t, tmp_path / "w.pt")), t)
    legacy = tmp_path / "legacy.pt"
    with saved_as_if_on_gpu():
        torch.save(t, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(load_original_tensor(legacy), t)
    # A view with an offset and strides survives (the rebuild honours them).
    base = torch.randn(4, K + 1, 5)
    view = base[1:, 1:]
    assert torch.equal(load_original_tensor(pickle_dump_like_original(view, tmp_path / "v.pkl")),
                       view)


def test_pickle_running_a_command_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pkl"
    with open(evil, "wb") as fh:
        pickle.dump(_RunsCommand(marker), fh)
    with pytest.raises(ValueError) as info:
        load_original_tensor(evil, "centroid cache")
    assert str(evil) in str(info.value) and "system" in str(info.value)
    assert "refusing" in str(info.value)
    assert not marker.exists()
    # The file really does run the command when unpickled plainly (the test can fail).
    with open(evil, "rb") as fh:
        pickle.load(fh)
    assert marker.exists()


def test_command_hidden_in_storage_bytes_or_torch_save_is_refused(tmp_path):
    marker = tmp_path / "ran"
    inner = pickle.dumps(_RunsCommand(marker), protocol=2)
    hidden = tmp_path / "hidden.pkl"
    with open(hidden, "wb") as fh:
        pickle.dump(_TensorOf(_StorageFromBytes(inner)), fh)
    with pytest.raises(ValueError, match="refusing to load .*hidden.pkl"):
        load_original_tensor(hidden)
    zipped = tmp_path / "evil.pt"
    torch.save(_RunsCommand(marker), zipped)
    with pytest.raises(ValueError, match="evil.pt"):
        load_original_tensor(zipped)
    assert not marker.exists()


def test_anything_but_one_float_tensor_is_refused(tmp_path):
    def dumped(obj, name):
        path = tmp_path / name
        with open(path, "wb") as fh:
            pickle.dump(obj, fh)
        return path
    with pytest.raises(ValueError, match="holds a dict, not a tensor"):
        load_original_tensor(dumped({"mu": torch.zeros(2, 2, 2)}, "d.pkl"))
    with pytest.raises(ValueError, match="refusing.*other than a tensor storage"):
        load_original_tensor(dumped(_TensorOf("not a storage"), "s.pkl"))
    with pytest.raises(ValueError, match="shape"):
        load_original_tensor(dumped(torch.zeros(2, 3), "r.pkl"))
    with pytest.raises(ValueError, match="int64"):
        load_original_tensor(dumped(torch.zeros(2, 3, 4, dtype=torch.int64), "i.pkl"))
    with pytest.raises(ValueError, match="NaN"):
        load_original_tensor(dumped(torch.full((1, 2, 2), float("nan")), "n.pkl"))
    with pytest.raises(FileNotFoundError, match="missing.pkl"):
        load_original_tensor(tmp_path / "missing.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="junk.pkl"):
        load_original_tensor(tmp_path / "junk.pkl")


def test_parse_cache_name():
    assert parse_cache_name("/c/_cached_median_djv3_8_1337_50_100_51_1459_mm0.pkl") == {
        "num_timesteps": 8, "seed": 1337, "sample_size_per_class": 50, "max_iter": 100,
        "num_classes": 51, "num_feats_per_timestep": 1459, "use_mm": 0}
    assert parse_cache_name("my_centroids.pkl") is None


# --------------------------------------------------------------------------- centroid cache

def test_imported_cache_is_where_training_starts(data, tmp_path):
    cfg = make_config(data, **SETTINGS, cache_dir=str(tmp_path / "cache"))
    index = index_from_config(cfg, progress=False)
    mu_orig = torch.randn(3, K, 3, generator=torch.Generator().manual_seed(5))
    src = pickle_dump_like_original(mu_orig, tmp_path / CACHE_NAME)
    entry = import_centroid_cache(src, cfg, index)
    logs = []
    mu, path = load_or_compute_centroids(TSEDataset(index, "train"),
                                         settings_from_config(cfg).centroids, cfg["cache_dir"],
                                         progress=False, log=logs.append)
    assert path == entry and torch.equal(mu, mu_orig) and "reusing" in logs[0]
    blob = torch.load(entry, weights_only=True)
    assert blob["imported_from"]["name_settings"]["seed"] == 1337
    assert len(blob["imported_from"]["sha256"]) == 64
    with pytest.raises(ValueError, match="already exists"):
        import_centroid_cache(src, cfg, index)

    # Training with this config starts from the imported centroids (frozen here: they stay).
    cfg_path = write_config_yaml(tmp_path / "c.yaml", data, **SETTINGS, freeze_centroids=True,
                                 cache_dir=str(tmp_path / "cache"),
                                 output_dir=str(tmp_path / "runs"), run_name="r")
    assert train_dejavid.main(["--config", str(cfg_path), "--no-progress"]) == 0
    assert torch.equal(load_checkpoint(tmp_path / "runs" / "r")["model"]["mu"], mu_orig)


def test_imported_cache_is_not_reused_for_other_data_or_settings(data, tmp_path):
    cfg = make_config(data, **SETTINGS, cache_dir=str(tmp_path / "cache"))
    index = index_from_config(cfg, progress=False)
    mu_orig = torch.randn(3, K, 3)
    entry = import_centroid_cache(pickle_dump_like_original(mu_orig, tmp_path / CACHE_NAME),
                                  cfg, index)
    quiet = dict(progress=False, log=lambda *a: None)
    other = dict(cfg, dba_max_iter=1)
    mu, path = load_or_compute_centroids(TSEDataset(index, "train"),
                                         settings_from_config(other).centroids,
                                         other["cache_dir"], **quiet)
    assert path != entry and not torch.equal(mu, mu_orig)
    # Same settings, one training video changed: the data fingerprint no longer matches.
    changed = tmp_path / "changed"
    videos = level_videos({"train": 6, "val": 3})
    vid = next(v for v, (_, _, s) in videos.items() if s == "train")
    videos[vid] = (videos[vid][0] + 0.5, *videos[vid][1:])
    cfg2 = make_config(write_dataset(changed, videos), **SETTINGS,
                       cache_dir=str(tmp_path / "cache"))
    train2 = TSEDataset(index_from_config(cfg2, progress=False), "train")
    mu2, path2 = load_or_compute_centroids(train2, settings_from_config(cfg2).centroids,
                                           cfg2["cache_dir"], **quiet)
    assert path2 != entry and not torch.equal(mu2, mu_orig)


@pytest.mark.parametrize("shape, name, message", [
    ((4, K, 3), f"_cached_median_djv3_{K}_1337_50_100_4_3_mm0.pkl", "C = 4 classes .* 3 classes"),
    ((3, K, 5), f"_cached_median_djv3_{K}_1337_50_100_3_5_mm0.pkl", "F = 5 features .* 3"),
    ((3, 6, 3), "_cached_median_djv3_6_1337_50_100_3_3_mm0.pkl", "pass --num_timesteps 6"),
    ((3, K, 3), f"_cached_median_djv3_{K}_1337_50_50_3_3_mm0.pkl", "pass --dba_max_iter 50"),
    ((3, K, 3), f"_cached_median_djv3_{K}_7_50_100_3_3_mm0.pkl", "pass --centroid_seed 7"),
    ((3, K, 3), f"_cached_median_djv3_{K}_1337_50_100_3_3_mm1.pkl", "pass --use_mm 1"),
    ((3, K, 3), "_cached_median_djv3_5_1337_50_100_3_3_mm0.pkl", "renamed or damaged"),
    ((4, K, 3), "renamed.pkl", "C = 4 classes"),
])
def test_cache_mismatch_says_what_to_fix(data, tmp_path, shape, name, message):
    cfg = make_config(data, **SETTINGS, cache_dir=str(tmp_path / "cache"))
    src = pickle_dump_like_original(torch.randn(*shape), tmp_path / name)
    with pytest.raises(ValueError, match=message):
        import_centroid_cache(src, cfg, index_from_config(cfg, progress=False))
    assert not list((tmp_path / "cache").glob("centroids_*"))  # (the feature store may be there)


# --------------------------------------------------------------------------- saved model

def original_distances(x: np.ndarray, mu: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """The original's distances [C] of one video x [T, F], written from its description
    (dtw_model_dist.py, validation: path from the current parameters, no diagonal):

    cost D[i, j] = sum_f w |mu[i] - x[j]| with w = exp(log-weights); accumulated cost with
    predecessors (i-1, j), (i, j-1); backtrack from (K-1, T-1), stepping to (i-1, j) only if
    its accumulated cost is strictly smaller than (i, j-1)'s; along the path each matched
    (i, j) adds m = (x[j] < mu[i] ? -1 : 1) as slope -= m, intercept += m x[j], and the
    distance is sum w (mu * slope + intercept)."""
    w = np.exp(theta)
    C, K_, F = mu.shape
    T = x.shape[0]
    out = np.zeros(C)
    for c in range(C):
        local = (w[c][:, None, :] * np.abs(mu[c][:, None, :] - x[None])).sum(-1)   # [K, T]
        acc = np.zeros((K_, T))
        for i in range(K_):
            for j in range(T):
                prev = [acc[i - 1, j]] if i else []
                prev += [acc[i, j - 1]] if j else []
                acc[i, j] = local[i, j] + (min(prev) if prev else 0.0)
        slope, intercept = np.zeros((K_, F)), np.zeros((K_, F))
        i, j = K_ - 1, T - 1
        while True:
            m = np.where(x[j] < mu[c, i], -1.0, 1.0)
            slope[i] -= m
            intercept[i] += m * x[j]
            if i == 0 and j == 0:
                break
            if i > 0 and j > 0:
                if acc[i - 1, j] < acc[i, j - 1]:
                    i -= 1
                else:
                    j -= 1
            elif i > 0:
                i -= 1
            else:
                j -= 1
        out[c] = (w[c] * (mu[c] * slope + intercept)).sum()
    return out


def _saved_model(tmp_path, C=3, F=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Centroids near the class levels (class c is the constant level c) so that accuracy is
    # far from chance, log-weights spread enough that w matters.
    mu = torch.arange(C, dtype=torch.float32)[:, None, None] + 0.3 * torch.randn(C, K, F, generator=g)
    theta = 0.5 * torch.randn(C, K, F, generator=g)
    return (pickle_dump_like_original(mu, tmp_path / "k_feats_rank_0_1700000000.0.pkl"),
            torch_save_like_original(theta, tmp_path / "feat_log_weights_rank_0_1700000000.0.pt"),
            mu, theta)


def test_imported_model_evaluates_like_the_original(data, tmp_path, capsys):
    kf, lw, mu, theta = _saved_model(tmp_path)
    cfg = make_config(data, **SETTINGS)
    index = index_from_config(cfg, progress=False)
    out = import_checkpoint(kf, lw, cfg, index, tmp_path / "original.pt")

    ckpt = load_checkpoint(out)
    assert torch.equal(ckpt["model"]["mu"], mu) and torch.equal(ckpt["model"]["theta"], theta)
    assert set(ckpt["imported_from"]) == {"centroids", "log_weights", "format"}
    model = DejaVid(ckpt["model"]["mu"], "hv", fixed_path=False)
    restore_model(model, ckpt)
    ds = TSEDataset(index, "val")
    batch = collate_packed([ds[n] for n in range(len(ds))])
    with torch.no_grad():
        ours = model(batch.x, batch.offsets).double().numpy()                 # [B, C]
    xs = [ds[n][0].double().numpy() for n in range(len(ds))]
    theirs = np.stack([original_distances(x, mu.double().numpy(), theta.double().numpy())
                       for x in xs])
    print("max |d_ours - d_original| / |d|", np.abs(ours - theirs).max() / np.abs(theirs).max())
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)

    # The original predicts argmax of the standardised -d; eval-only must agree per video.
    z = -theirs
    z = (z - z.mean(1, keepdims=True)) / (z.std(1, ddof=1, keepdims=True) + 1e-18)
    want = {index.ids[int(r)]: index.label_values[int(c)]
            for r, c in zip(batch.rows, z.argmax(1))}
    preds = tmp_path / "preds.csv"
    assert train_dejavid.main(["--eval-only", "--checkpoint", str(out), "--predictions",
                               str(preds), "--no-progress"]) == 0
    with open(preds) as fh:
        got = {row["video_id"]: int(row["pred_top5"].split()[0]) for row in csv.DictReader(fh)}
    assert got == want
    top1 = np.mean([want[v] == index.label_values[int(index.labels[index.ids.index(v)])]
                    for v in want])
    assert top1 > 0.5      # far from chance (1/3): the weights and centroids were read right
    assert f"top1 {top1:.4f}" in capsys.readouterr().out


def test_model_import_errors(data, tmp_path):
    cfg = make_config(data, **SETTINGS)
    index = index_from_config(cfg, progress=False)
    kf = pickle_dump_like_original(torch.randn(3, K, 3), tmp_path / "k.pkl")
    lw = torch_save_like_original(torch.randn(3, K, 2), tmp_path / "w.pt")
    with pytest.raises(ValueError, match="saved together"):
        import_checkpoint(kf, lw, cfg, index, tmp_path / "o.pt")
    kf5 = pickle_dump_like_original(torch.randn(5, K, 3), tmp_path / "k5.pkl")
    lw5 = torch_save_like_original(torch.randn(5, K, 3), tmp_path / "w5.pt")
    with pytest.raises(ValueError, match="C = 5 classes"):
        import_checkpoint(kf5, lw5, cfg, index, tmp_path / "o.pt")
    assert not (tmp_path / "o.pt").exists()


def test_script(data, tmp_path, capsys):
    kf, lw, _, _ = _saved_model(tmp_path)
    cfg_path = write_config_yaml(tmp_path / "c.yaml", data, **SETTINGS,
                                 cache_dir=str(tmp_path / "cache"))
    src = pickle_dump_like_original(torch.randn(3, K, 3), tmp_path / CACHE_NAME)
    out = tmp_path / "imported.pt"
    assert import_original.main(["--config", str(cfg_path), "--no-progress", "--cache", str(src),
                                 "--k-feats", str(kf), "--log-weights", str(lw),
                                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "centroid cache entry written" in printed and f"--checkpoint {out}" in printed
    assert out.is_file()
    # User errors: 'error: ...' on stderr and exit code 2, no traceback.
    res = subprocess.run([sys.executable, str(ROOT / "import_original.py"), "--config",
                          str(cfg_path), "--k-feats", str(kf)], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error: --k-feats and --log-weights go together")
    assert "Traceback" not in res.stderr


def test_import_into_a_standardising_config_is_refused(tmp_path):
    """The original's parameters are of the raw features: they cannot serve a config whose
    inputs are standardised."""
    data = write_dataset(tmp_path / "d", level_videos({"train": 6, "val": 3}))
    cfg = make_config(data, **{**SETTINGS, "standardize": True}, cache_dir=str(tmp_path / "cache"))
    index = index_from_config(cfg, progress=False)
    src = pickle_dump_like_original(torch.randn(3, K, 3), tmp_path / CACHE_NAME)
    with pytest.raises(ValueError, match="set standardize: false"):
        import_centroid_cache(src, cfg, index)
