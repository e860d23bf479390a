"""Hugging Face ``AutoModelForVideoClassification`` encoders (VideoMAE, TimeSformer,
ViViT, V-JEPA 2, and remote-code models such as VideoMAE V2 behind
``trust_remote_code``).

``hf:ID_OR_DIR`` loads a checkpoint the library's normal way (``from_pretrained``, the
Hub cache or a local folder) with its processor's mean, std, resize and crop.
``hf:MODEL_TYPE`` (``videomae``, ``timesformer``, ``vivit``, ``vjepa2``, ...) with
``random_init`` builds the architecture from transformers' own default config for that
type, changed by ``overrides`` (e.g. a tiny one for tests), with nothing downloaded.
The embedding is the pooled vector the classifier layer reads.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch

from ..errors import MissingDependency
from .encoders import IMAGENET_MEAN, IMAGENET_STD, Encoder, Preprocess

# Model types whose image processors normalise with 0.5 instead of ImageNet's statistics.
HALF_MEAN_TYPES = {"vivit"}


def _transformers():
    try:
        import transformers
    except ImportError as exc:
        raise MissingDependency("hf: encoders need transformers: pip install transformers "
                                "(or pip install -e '.[extract]')") from exc
    return transformers


def _is_model_type(name: str) -> bool:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    return "/" not in name and not Path(name).exists() and name in CONFIG_MAPPING


PROCESSOR_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")


def _processor_settings(name: str) -> dict:
    """mean, std, resize and crop from the checkpoint's own processor file (read as JSON,
    found the library's normal way: a local folder or the Hub cache), so that no
    processor class (some need torchvision) is imported; {} when it ships none."""
    from transformers.utils import cached_file
    for fname in PROCESSOR_FILES:
        path = cached_file(name, fname, _raise_exceptions_for_missing_entries=False)
        if path:
            proc = json.loads(Path(path).read_text())
            break
    else:
        return {}
    out = {}
    if proc.get("image_mean") is not None:
        out["mean"], out["std"] = tuple(proc["image_mean"]), tuple(proc["image_std"])
    size, crop = proc.get("size") or {}, proc.get("crop_size") or {}
    size = size if isinstance(size, dict) else {"shortest_edge": size}
    crop = crop if isinstance(crop, dict) else {"height": crop}
    resize = size.get("shortest_edge") or size.get("height")
    if resize:
        out["resize"] = int(resize)
    if crop.get("height"):
        out["crop"] = int(crop["height"])
    return out


class HFEncoder(Encoder):
    def __init__(self, name: str, random_init: bool, trust_remote_code: bool, overrides: dict):
        super().__init__()
        tr = _transformers()
        remote = {"trust_remote_code": trust_remote_code}
        if _is_model_type(name):
            if not random_init:
                raise ValueError(f"hf:{name} names an architecture, not a checkpoint: give a "
                                 f"Hub id or a local folder (hf:MCG-NJU/videomae-base-finetuned-"
                                 f"kinetics), or add --random-init to build it without weights")
            config = tr.AutoConfig.for_model(name, **overrides)
            processor = {}
        else:
            config = tr.AutoConfig.from_pretrained(name, **remote, **overrides)
            processor = _processor_settings(name)
        self.model, self.classifies = _load(tr, name, config, random_init, trust_remote_code)
        self.head = getattr(self.model, "classifier", None) if self.classifies else None
        size = (getattr(config, "image_size", None) or getattr(config, "crop_size", None) or 224)
        size = size if isinstance(size, int) else int(size[0])
        frames = getattr(config, "num_frames", None) or getattr(config, "frames_per_clip", None) or 16
        half = config.model_type in HALF_MEAN_TYPES
        self.pre = Preprocess(
            clip_len=int(frames), resize=processor.get("resize", size), crop=processor.get("crop", size),
            mean=processor.get("mean", (0.5,) * 3 if half else IMAGENET_MEAN),
            std=processor.get("std", (0.5,) * 3 if half else IMAGENET_STD),
            layout="NTCHW" if self.classifies else "NCTHW")
        params = inspect.signature(self.model.forward).parameters
        self.input_name = "pixel_values_videos" if "pixel_values_videos" in params else "pixel_values"
        labels = getattr(config, "id2label", None) or {}
        self.settings = {"model_type": config.model_type, "video_classification": self.classifies,
                         "class_names": [labels[i] for i in sorted(labels)] if not random_init else None}

    def forward(self, x):
        if self.classifies:
            return self.model(**{self.input_name: x}).logits
        if hasattr(self.model, "extract_features"):          # VideoMAE V2's remote code
            return self.model.extract_features(pixel_values=x)
        out = self.model(pixel_values=x)
        if isinstance(out, torch.Tensor):
            return out
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None else out.last_hidden_state.mean(1)


def _load(tr, name: str, config, random_init: bool, trust_remote_code: bool):
    """``(model, True)`` from AutoModelForVideoClassification; with ``trust_remote_code``, a
    checkpoint whose own code registers only AutoModel (VideoMAE V2: a feature extractor
    taking ``[N, C, T, H, W]``) gives ``(model, False)`` and its output is the embedding."""
    remote = {"trust_remote_code": trust_remote_code}
    autos = [tr.AutoModelForVideoClassification] + ([tr.AutoModel] if trust_remote_code else [])
    for n, auto in enumerate(autos):
        try:
            if random_init:
                return auto.from_config(config, **remote), n == 0
            return auto.from_pretrained(name, config=config, **remote), n == 0
        except ValueError as exc:
            if n + 1 == len(autos):
                raise ValueError(f"hf:{name} is not a video classification model "
                                 f"({str(exc).splitlines()[0]}); if "
                                 f"it ships its own code (VideoMAE V2) and you trust it, add "
                                 f"--trust-remote-code") from exc


def build(kind: str, name: str, random_init: bool, trust_remote_code: bool, overrides: dict):
    return HFEncoder(name, random_init, trust_remote_code, overrides)
