"""predict.py and dejavid.predict: new raw videos classified by a trained checkpoint with
the encoder and sampling its training features were made with (carried in the
checkpoint), end to end on generated videos."""
from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch

from conftest import ROOT  # noqa: F401  (puts the scripts on sys.path)
from helpers import seeded_video, write_config_yaml, write_dataset

pytest.importorskip("av", reason="the prediction tests decode videos with PyAV")
pytest.importorskip("transformers", reason="the prediction tests need transformers")

import extract_tse  # noqa: E402
import predict  # noqa: E402
import prepare_video_demo as demo  # noqa: E402
import train_dejavid  # noqa: E402
from dejavid.predict.inputs import list_inputs  # noqa: E402
from dejavid.predict.videos import load_classifier, predict_videos  # noqa: E402

# A one-layer, 32-wide VideoMAE on 32 x 32 frames, 4-frame clips: milliseconds a clip.
ENCODER = ["--encoder", "hf:videomae", "--random-init", "--seed", "5"] + [
    f for kv in ("hidden_size=32", "num_hidden_layers=1", "num_attention_heads=2",
                 "intermediate_size=64", "image_size=32", "patch_size=16", "num_frames=4",
                 "num_labels=6") for f in ("--hf-config", kv)]
SAMPLING = ["--clip-len", "4", "--clip-stride", "4"]
TRAIN = ["--num_epochs", "2", "--batch_size", "4", "--num_timesteps", "8", "--lr", "0.05",
         "--no-progress"]


def _train(config, runs, name: str) -> str:
    assert train_dejavid.main(["--config", str(config), "--output_dir", str(runs),
                               "--run_name", name, *TRAIN]) == 0
    return str(runs / name / "best.pt")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Generated order videos (2 train + 1 val per class, 32 x 32), their TSEs and a
    checkpoint trained on them with train_dejavid.py."""
    tmp = tmp_path_factory.mktemp("pred")
    demo.generate(tmp / "videos", 2, 1, seed=2, design=demo.Design(size=32), progress=False)
    assert extract_tse.main(["--source", "csv", "--annotations", str(tmp / "videos" / "manifest.csv"),
                             *ENCODER, *SAMPLING, "--out", str(tmp / "feats"), "--workers", "0",
                             "--no-progress"]) == 0
    return tmp, _train(tmp / "feats" / "config.yaml", tmp / "runs", "ok")


def test_predict_script_reports_an_unreadable_file_and_classifies_the_others(trained, capsys):
    tmp, ckpt = trained
    bad = tmp / "broken.mp4"
    bad.write_bytes(b"this is not a video")
    good = sorted((tmp / "videos" / "videos").rglob("val_*.mp4"))
    out = tmp / "preds.csv"
    code = predict.main(["--checkpoint", ckpt, str(good[0]), str(bad), *map(str, good[1:]),
                         "--out", str(out)])
    assert code == predict.EXIT_SOME_FAILED
    printed = capsys.readouterr().out
    assert f"{bad}: FAILED: unreadable" in printed
    assert f"{len(good)} of {len(good) + 1} videos classified" in printed
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["video"] for r in rows] == [str(good[0]), str(bad), *map(str, good[1:])]
    for r in rows:
        if r["video"] == str(bad):
            assert r["error"].startswith("unreadable") and not r["pred_top5"]
            continue
        names, dists = r["pred_top5"].split(), [float(d) for d in r["dist_top5"].split()]
        assert sorted(names) == sorted(set(names)) and set(names) <= set(demo.CLASSES)
        assert len(names) == 5 and dists == sorted(dists) and not r["error"]


def test_the_classifier_encodes_a_video_as_the_training_features_were(trained):
    tmp, ckpt = trained
    clf = load_classifier(ckpt)
    vid = f"videos/{demo.CLASSES[3]}/train_001"
    feats, errors = clf.sequences([str(tmp / "videos" / f"{vid}.mp4")])
    stored = torch.load(tmp / "feats" / "feats" / f"{vid}.pt", weights_only=True)
    assert not errors
    assert feats[0].shape == stored.shape
    torch.testing.assert_close(feats[0], stored, rtol=1e-5, atol=1e-5)
    # the names of the checkpoint's classes (label ids: the manifest's sorted labels)
    assert clf.class_names == sorted(demo.CLASSES)


def test_library_records_match_the_script_and_carry_manifest_labels(trained):
    tmp, ckpt = trained
    paths, labels = list_inputs([str(tmp / "videos" / "manifest.csv")])
    assert len(paths) == 18 and labels.count(demo.CLASSES[0]) == 3
    preds = predict_videos(ckpt, paths[:4], top=3)
    assert [p.video for p in preds] == paths[:4]
    assert all(len(p.classes) == 3 and p.error is None for p in preds)
    again = load_classifier(ckpt).predict(paths[:4], top=3, labels=labels[:4])
    assert [p.distances for p in again] == [p.distances for p in preds]
    assert [p.label for p in again] == labels[:4]


def test_a_folder_lists_its_videos_and_a_missing_input_is_named(trained, tmp_path):
    tmp, _ = trained
    paths, labels = list_inputs([str(tmp / "videos" / "videos" / demo.CLASSES[1])])
    assert [p.rsplit("/", 1)[1] for p in paths] == ["train_000.mp4", "train_001.mp4", "val_000.mp4"]
    assert labels == [None] * 3
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        list_inputs([str(tmp_path / "nope.mp4")])


def test_a_checkpoint_without_extraction_settings_names_the_options_to_give(trained, tmp_path,
                                                                           capsys):
    tmp, ckpt = trained
    F = torch.load(tmp / "feats" / "feats" / f"videos/{demo.CLASSES[0]}/train_000.pt",
                   weights_only=True).shape[1]
    # plain tensors, as users of the original DejaVid prepare them: no extraction.json
    videos = {f"v{n}": (seeded_video(6 + n % 3, n, f=F), n % 2, "val" if n >= 8 else "train")
              for n in range(10)}
    paths = write_dataset(tmp_path / "plain", videos)
    config = write_config_yaml(tmp_path / "plain.yaml", paths, cache_dir=str(tmp_path / "cache"))
    plain = _train(config, tmp_path / "runs", "plain")
    video = str(sorted((tmp / "videos" / "videos").rglob("*.mp4"))[0])
    with pytest.raises(ValueError, match="without extraction settings") as err:
        predict.main(["--checkpoint", plain, video])
    for option in ("--extraction FOLDER", "--encoder SPEC", "--hf-config", "--clip-len"):
        assert option in str(err.value)
    # ... and given explicitly, both ways work
    assert predict.main(["--checkpoint", plain, video, "--extraction", str(tmp / "feats")]) == 0
    assert predict.main(["--checkpoint", plain, video, *ENCODER, *SAMPLING]) == 0
    assert capsys.readouterr().out.count("1 of 1 videos classified") == 2
    # an encoder that gives another F is refused, naming both sizes
    wider = [a.replace("hidden_size=32", "hidden_size=48") for a in ENCODER]
    with pytest.raises(ValueError, match=f"F = {F} .* F = {F + 16}"):
        predict.main(["--checkpoint", plain, video, *wider, *SAMPLING])


def test_an_encoder_that_cannot_be_rebuilt_is_a_clear_error(trained, tmp_path):
    tmp, ckpt = trained
    state = torch.load(ckpt, weights_only=True)
    # as if the features had come from a TorchScript file that has since moved away
    gone = tmp_path / "moved" / "encoder.pt"
    state["extraction"]["settings"]["encoder"].update(spec=f"torchscript:{gone}", random_init=False)
    broken = tmp_path / "broken.pt"
    torch.save(state, broken)
    with pytest.raises(ValueError, match=f"cannot rebuild the encoder torchscript:{gone} .*not found"):
        load_classifier(broken)


def test_the_script_exits_2_with_one_line_for_a_missing_checkpoint(trained, tmp_path):
    tmp, _ = trained
    video = str(sorted((tmp / "videos" / "videos").rglob("*.mp4"))[0])
    res = subprocess.run([sys.executable, str(ROOT / "predict.py"), "--checkpoint",
                          str(tmp_path / "none.pt"), video], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"error: checkpoint not found: {tmp_path / 'none.pt'}"]


def test_extraction_record_is_the_data_folders_files_or_none(trained, tmp_path):
    from dejavid.training.checkpoint import extraction_record
    tmp, _ = trained
    record = extraction_record({"id2feats": str(tmp / "feats")})
    assert record["classes"] == {str(n): c for n, c in enumerate(sorted(demo.CLASSES))}
    assert record["settings"]["sampling"]["clip_len"] == 4
    assert extraction_record({"id2feats": str(tmp_path)}) is None and extraction_record(None) is None
    (tmp_path / "extraction.json").write_text("{not json")
    with pytest.raises(ValueError, match=f"{tmp_path}: extraction.json or classes.json is not valid JSON"):
        extraction_record({"id2feats": str(tmp_path)})
