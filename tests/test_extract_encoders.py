"""Every encoder kind behind the one interface, each extracting a 2-video sample: the
Hugging Face model types (tiny random-init configs, always), every
``torchvision.models.video`` model (wherever torchvision imports; skipped with the
reason elsewhere), a TorchScript file and a python factory; and the three paper data
sets' annotation formats through extract_tse.py."""
from __future__ import annotations

import csv
import json
import pickle

import pytest
import torch

pytest.importorskip("av", reason="the extraction tests need PyAV (pip install av)")
pytest.importorskip("transformers", reason="the extraction tests need transformers")

import extract_tse  # noqa: E402
from dejavid.extract.encoders import build_encoder  # noqa: E402
from dejavid.extract.pipeline import Options, extract  # noqa: E402
from dejavid.extract.sampling import Sampling  # noqa: E402
from dejavid.extract.sources import Listing, VideoItem  # noqa: E402
from test_extract import TINY_FLAGS, make_video  # noqa: E402

SMALL = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
             num_labels=3)
HF_TINY = {
    "videomae": dict(image_size=32, patch_size=16, num_frames=4),
    "timesformer": dict(image_size=32, patch_size=16, num_frames=4),
    "vivit": dict(image_size=32, num_frames=4, tubelet_size=[2, 16, 16]),
    "vjepa2": dict(crop_size=32, frames_per_clip=4, patch_size=16, pred_hidden_size=32,
                   pred_num_hidden_layers=1, pred_num_attention_heads=2, num_pooler_layers=1),
}


@pytest.fixture(scope="module")
def two_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    paths = [make_video(root / f"v{k}.mp4", 10 + 6 * k, seed=k, w=40, h=36) for k in range(2)]
    return Listing([VideoItem(f"v{k}", str(p), "c", "train") for k, p in enumerate(paths)], ["c"])


def _extract_two(enc, listing, out, clip_len):
    code = extract(listing, enc, Sampling(clip_len, clip_stride=clip_len),
                   Options(out, workers=0, batch_clips=2, progress=False), log=lambda *_: None)
    assert code == 0
    return [torch.load(out / f"feats/v{k}.pt", weights_only=True) for k in range(2)]


@pytest.mark.parametrize("model_type", sorted(HF_TINY))
def test_hugging_face_model_types_random_init(model_type, two_videos, tmp_path):
    enc = build_encoder(f"hf:{model_type}", random_init=True, overrides={**SMALL, **HF_TINY[model_type]})
    assert enc.pre.clip_len == 4 and enc.pre.crop == 32 and enc.pre.layout == "NTCHW"
    assert enc.settings["model_type"] == model_type and enc.settings["random_init"]
    x0, x1 = _extract_two(enc, two_videos, tmp_path / "out", 4)
    # 10 and 16 frames in clips of 4: 2 and 4 steps; 32 embedding + 3 logits
    assert x0.shape == (2, 35) and x1.shape == (4, 35) and torch.isfinite(x1).all()
    # the appended logits are the classifier applied to the embedding
    head = enc.model.classifier
    with torch.no_grad():
        assert torch.allclose(head(x1[:, :32]), x1[:, 32:], atol=1e-5)


def test_hugging_face_default_config_is_the_library_default():
    """Without overrides hf:videomae is transformers' own VideoMAEConfig() (no download)."""
    from transformers import VideoMAEConfig
    enc = build_encoder("hf:videomae", random_init=True)
    want = VideoMAEConfig()
    assert enc.model.config.hidden_size == want.hidden_size == 768
    assert enc.pre.clip_len == want.num_frames and enc.pre.crop == want.image_size


def test_hugging_face_saved_checkpoint_loads_the_normal_way(tmp_path, two_videos):
    """A local folder (what from_pretrained downloads into) loads through the same code
    path as a Hub id, with its processor's mean/std and sizes and its class names."""
    from transformers import AutoConfig, AutoModelForVideoClassification, VideoMAEImageProcessor
    cfg = AutoConfig.for_model("videomae", **SMALL, **HF_TINY["videomae"],
                               id2label={0: "x", 1: "y", 2: "z"}, label2id={"x": 0, "y": 1, "z": 2})
    torch.manual_seed(1)
    AutoModelForVideoClassification.from_config(cfg).save_pretrained(tmp_path / "ckpt")
    VideoMAEImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32},
                           image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.2, 0.2]
                           ).save_pretrained(tmp_path / "ckpt")
    enc = build_encoder(f"hf:{tmp_path / 'ckpt'}")
    assert not enc.settings["random_init"] and enc.settings["class_names"] == ["x", "y", "z"]
    assert (enc.pre.resize, enc.pre.crop, enc.pre.mean) == (36, 32, (0.5, 0.4, 0.3))
    x0, _ = _extract_two(enc, two_videos, tmp_path / "out", 4)
    assert x0.shape == (2, 35)
    with pytest.raises(ValueError, match="names an architecture"):
        build_encoder("hf:videomae")


# ---------------------------------------------------------------- torchvision
def _torchvision_or_skip():
    from dejavid.errors import MissingDependency
    from dejavid.extract.tv import import_torchvision
    try:
        return import_torchvision()
    except MissingDependency as exc:
        print(f"SKIP torchvision encoders: {exc}")
        pytest.skip(f"torchvision does not import here: {str(exc)[:160]}")


@pytest.mark.parametrize("name", ["r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b",
                                  "mvit_v2_s", "swin3d_t", "swin3d_s", "swin3d_b"])
def test_torchvision_video_models_random_init(name, two_videos, tmp_path):
    models = _torchvision_or_skip()
    assert set(models.list_models(module=models.video)) >= {name}
    enc = build_encoder(f"torchvision:{name}", random_init=True)
    x0, x1 = _extract_two(enc, two_videos, tmp_path / "out", enc.pre.clip_len)
    d, c = enc.dims()
    assert c == 400 and x0.shape[1] == d + c and len(x0) == 1


def test_unknown_torchvision_name_is_refused():
    from dejavid.errors import MissingDependency
    with pytest.raises((ValueError, MissingDependency), match="r4d_99|torchvision"):
        build_encoder("torchvision:r4d_99", random_init=True)


# ---------------------------------------------------------------- your own encoder
class Pool(torch.nn.Module):
    """Mean colour per frame position, and 2 'logits'."""
    clip_len = 3
    crop = 24

    def forward(self, x):                      # [N, 3, T, H, W]
        emb = x.mean(dim=(3, 4)).flatten(1)
        return emb, emb[:, :2] * 2


def test_torchscript_and_python_factory_encoders(two_videos, tmp_path, monkeypatch):
    torch.jit.script(Pool()).save(str(tmp_path / "pool.pt"))
    ts = build_encoder(f"torchscript:{tmp_path / 'pool.pt'}", clip_len=3, crop=24)
    x0, x1 = _extract_two(ts, two_videos, tmp_path / "ts", 3)
    assert x0.shape == (3, 9 + 2) and torch.equal(x0[:, 9:], x0[:, :2] * 2)
    assert (x0[:, :9] >= 0).all() and (x0[:, :9] <= 1).all()
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "my_enc.py").write_text("from test_extract_encoders import Pool\n"
                                        "def build():\n    return Pool()\n")
    py = build_encoder("python:my_enc:build")
    assert (py.pre.clip_len, py.pre.crop) == (3, 24)
    y0, _ = _extract_two(py, two_videos, tmp_path / "py", 3)
    assert torch.equal(x0, y0)
    with pytest.raises(ValueError, match="has no function nope"):
        build_encoder("python:my_enc:nope")
    with pytest.raises(FileNotFoundError, match="not found"):
        build_encoder(f"torchscript:{tmp_path / 'none.pt'}")


# ---------------------------------------------------------------- the paper's data sets
def _cli(args, out, capsys):
    code = extract_tse.main([*map(str, args), "--encoder", "hf:videomae", "--random-init",
                             *TINY_FLAGS, "--out", str(out), "--workers", "0", "--no-progress"])
    text = capsys.readouterr().out
    with open(out / "failures.csv", newline="") as fh:
        failed = {r["id"]: r["reason"] for r in csv.DictReader(fh)}
    maps = {n: pickle.loads((out / f"{n}.pkl").read_bytes()) for n in ("id2splits", "id2labels")}
    return code, text, failed, maps


def test_hmdb51_from_its_split_files(tmp_path, capsys):
    ann = tmp_path / "splits"
    ann.mkdir()
    (ann / "clap_test_split1.txt").write_text("c1.avi 1 \nc2.avi 2 \nc3.avi 0 \n")
    (ann / "wave_test_split1.txt").write_text("w1.avi 1 \nw2.avi 2 \n")
    for cls, names in (("clap", ("c1", "c2", "c3")), ("wave", ("w1", "w2"))):
        for k, n in enumerate(names):
            make_video(tmp_path / "v" / cls / f"{n}.avi", 8, seed=k)
    code, text, failed, maps = _cli(["--source", "hmdb51", "--annotations", ann, "--videos",
                                     tmp_path / "v", "--split-number", "1"], tmp_path / "out", capsys)
    assert code == 0 and failed == {}
    assert maps["id2splits"] == {"c1": "train", "c2": "test", "w1": "train", "w2": "test"}
    assert maps["id2labels"] == {"c1": 0, "c2": 0, "w1": 1, "w2": 1}
    assert "eval_split: test" in (tmp_path / "out" / "config.yaml").read_text()


def test_k400_missing_videos_are_reported_not_fatal(tmp_path, capsys):
    ann = tmp_path / "ann"
    ann.mkdir()
    head = "label,youtube_id,time_start,time_end,split\n"
    (ann / "train.csv").write_text(head + "abseiling,aaa,0,10,train\nyawning,bbb,3,13,train\n"
                                          "yawning,ccc,7,17,train\n")
    (ann / "validate.csv").write_text(head + "abseiling,ddd,1,11,validate\n")
    for n in ("aaa_000000_000010", "bbb_000003_000013"):
        make_video(tmp_path / "v" / "train" / f"{n}.mp4", 8)
    make_video(tmp_path / "v" / "val" / "ddd_000001_000011.mp4", 8)
    code, text, failed, maps = _cli(["--source", "k400", "--annotations", ann, "--videos",
                                     tmp_path / "v"], tmp_path / "out", capsys)
    assert code == 3 and failed == {"ccc_000007_000017": "missing: no such file"}
    assert maps["id2splits"] == {"aaa_000000_000010": "train", "bbb_000003_000013": "train",
                                 "ddd_000001_000011": "val"}
    assert "FAILED: 1 videos (1 missing)" in text
    assert json.loads((tmp_path / "out" / "classes.json").read_text()) == {"0": "abseiling", "1": "yawning"}


def test_ssv2_from_its_json_files(tmp_path, capsys):
    (tmp_path / "labels.json").write_text(json.dumps({"Pushing something": "0", "Lifting something up": "1"}))
    (tmp_path / "train.json").write_text(json.dumps([
        {"id": "1", "template": "Pushing [something]"}, {"id": "2", "template": "Lifting [something] up"}]))
    (tmp_path / "validation.json").write_text(json.dumps([{"id": "3", "template": "Lifting [Something] up"}]))
    for k in (1, 2, 3):
        make_video(tmp_path / "v" / f"{k}.webm", 8, seed=k, codec="libvpx")
    code, text, failed, maps = _cli(["--source", "ssv2", "--annotations", tmp_path, "--videos",
                                     tmp_path / "v"], tmp_path / "out", capsys)
    assert code == 3 and failed == {"3": "unknown label 'Lifting Something up' (not one of the 2 classes)"}
    assert maps["id2labels"] == {"1": 0, "2": 1} and maps["id2splits"] == {"1": "train", "2": "train"}


def test_a_checkpoint_that_is_no_video_classifier_names_the_remote_code_flag(tmp_path):
    from transformers import AutoConfig
    AutoConfig.for_model("bert", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match="not a video classification model.*--trust-remote-code"):
        build_encoder(f"hf:{tmp_path / 'bert'}", random_init=True)
