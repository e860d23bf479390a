"""Per-feature standardisation: statistics from the training split only, applied to every
split and to the centroids, saved in checkpoints and used again by --eval-only."""
from __future__ import annotations

import json

import torch

import train_dejavid
from dejavid.model.centroids import centroid_meta, load_or_compute_centroids
from dejavid.data.dataset import TSEDataset
from dejavid.config.settings import index_from_config, settings_from_config
from dejavid.data.standardize import RunningStats, apply
from helpers import feature_file, level_videos, make_config, write_config_yaml, write_dataset


def test_running_stats_match_the_concatenated_steps():
    g = torch.Generator().manual_seed(0)
    xs = [1e4 + 3.0 * torch.randn(int(T), 4, generator=g, dtype=torch.float64)
          for T in torch.randint(1, 30, (25,), generator=g)]
    stats = RunningStats()
    for x in xs:
        stats.add(x)
    s = stats.result()
    allx = torch.cat(xs)
    print("max mean diff", (s["mean"].double() - allx.mean(0)).abs().max().item(),
          "max std diff", (s["std"].double() - allx.std(0, unbiased=False)).abs().max().item())
    assert torch.allclose(s["mean"].double(), allx.mean(0), rtol=1e-6)
    assert torch.allclose(s["std"].double(), allx.std(0, unbiased=False), rtol=1e-5)


def test_constant_feature_is_centred_not_blown_up():
    stats = RunningStats()
    for T in (3, 5):
        x = torch.randn(T, 2)
        x[:, 1] = 7.0
        stats.add(x)
    s = stats.result()
    assert s["std"][1] == 1.0
    out = apply(torch.tensor([[0.0, 7.0]]), s)
    assert out[0, 1] == 0.0 and torch.isfinite(out).all()


def _videos():
    """Levels 0/1/2 plus a second-feature scale of 1000; validation videos shifted by +50
    in feature 0, so statistics that included them would be visibly different."""
    videos = level_videos({"train": 6, "val": 4}, num_classes=3, seed=1)
    for vid, (x, lab, split) in videos.items():
        x = x.clone()
        x[:, 1] *= 1000.0
        if split == "val":
            x[:, 0] += 50.0
        videos[vid] = (x, lab, split)
    return videos


def test_statistics_come_from_the_training_split_only(tmp_path):
    videos = _videos()
    paths = write_dataset(tmp_path, videos)
    index = index_from_config(make_config(paths, standardize=True, num_timesteps=4), progress=False)
    train = torch.cat([x for x, _, s in videos.values() if s == "train"])
    assert torch.allclose(index.feature_stats["mean"], train.mean(0), rtol=1e-5)
    assert torch.allclose(index.feature_stats["std"], train.std(0, unbiased=False), rtol=1e-5)
    # Every split is transformed with those statistics.
    for split in ("train", "val"):
        ds = TSEDataset(index, split)
        x, _, k = ds[0]
        raw = videos[index.ids[k]][0]
        assert torch.allclose(x, (raw - index.feature_stats["mean"]) / index.feature_stats["std"])
    off = index_from_config(make_config(paths, standardize=False, num_timesteps=4), progress=False)
    assert off.feature_stats is None
    assert torch.equal(TSEDataset(off, "val")[0][0], videos[off.ids[off.rows("val")[0]]][0])


def test_centroids_live_in_the_standardised_space_and_are_keyed_by_it(tmp_path):
    paths = write_dataset(tmp_path, _videos())
    # One seeded sample per class and no DBA iteration: a centroid is that training video,
    # resampled (the medoid of several could differ between the spaces).
    one = {"num_timesteps": 4, "dba_max_iter": 0, "sample_size_per_class": 1}
    on = make_config(paths, standardize=True, **one)
    off = make_config(paths, standardize=False, **one)
    i_on, i_off = index_from_config(on, progress=False), index_from_config(off, progress=False)
    s_on, s_off = settings_from_config(on).centroids, settings_from_config(off).centroids
    assert centroid_meta(i_on, "train", s_on) != centroid_meta(i_off, "train", s_off)
    quiet = dict(progress=False, log=lambda *a: None)
    mu_on, p_on = load_or_compute_centroids(TSEDataset(i_on, "train"), s_on, on["cache_dir"], **quiet)
    mu_off, p_off = load_or_compute_centroids(TSEDataset(i_off, "train"), s_off, off["cache_dir"],
                                              **quiet)
    assert p_on != p_off
    s = i_on.feature_stats
    assert torch.allclose(mu_on, (mu_off - s["mean"]) / s["std"], atol=1e-4)
    assert mu_on[:, :, 1].abs().max() < 10 < mu_off[:, :, 1].abs().max()


def test_checkpoint_keeps_the_statistics_and_eval_only_reproduces_the_last_epoch(tmp_path, capsys):
    videos = _videos()
    paths = write_dataset(tmp_path / "data", videos)
    cfg_path = write_config_yaml(tmp_path / "cfg.yaml", paths, standardize=True,
                                 num_timesteps="auto", logit_head="temperature", num_epochs=3,
                                 batch_size=6, lr=0.05, run_name="std", in_memory=True)
    assert train_dejavid.main(["--config", str(cfg_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "num_timesteps: auto -> 8" in out           # lengths 3..9, median clipped up to 8
    assert "num_timesteps: 8" in out                   # the printed, resolved config
    run = tmp_path / "data" / "runs" / "std"
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["config"]["num_timesteps"] == 8 and ckpt["config"]["standardize"] is True
    index = index_from_config(make_config(paths, standardize=True), progress=False)
    for key in ("mean", "std"):
        assert torch.equal(ckpt["standardize"][key], index.feature_stats[key])
    last = ckpt["history"][-1]

    # Change the training data after training: evaluation must still use the statistics
    # the model was trained with (from the checkpoint), not new ones from the data.
    vid = next(v for v, (_, _, s) in videos.items() if s == "train")
    torch.save(videos[vid][0] * 100.0, paths["id2feats"] / feature_file(vid))
    assert train_dejavid.main(["--eval-only", "--checkpoint", str(run / "last.pt"),
                               "--no-progress"]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("eval on")][0]
    print(line, "| last epoch:", json.dumps(last))
    assert f"loss {last['val_loss']:.4f} top1 {last['val_top1']:.4f}" in line
