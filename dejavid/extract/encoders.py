"""One interface for every video encoder: a batch of clips ``uint8 [N, T, H, W, 3]`` ->
embeddings ``float32 [N, D]`` and, when the model has a classifier, its logits
``[N, C]``.

Each encoder brings its own preprocessing (frames per clip, resize, centre crop,
mean/std); the decode workers do the resize and crop on uint8 frames
(:meth:`Encoder.crop`), the encoder the scaling and normalisation.  The embedding is
what the model's classifier reads (a forward hook on that layer takes its input), the
logits what it returns, so both come from one forward pass.

    build_encoder("hf:videomae", random_init=True)    Hugging Face (extract.hf)
    build_encoder("torchvision:r2plus1d_18")          torchvision.models.video (extract.tv)
    build_encoder("torchscript:enc.pt") / ("python:pkg.mod:factory")   your own (extract.custom)
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import yaml

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINDS = {"hf": ".hf", "torchvision": ".tv", "torchscript": ".custom", "python": ".custom"}


def config_overrides(pairs: list[str]) -> dict:
    """``--hf-config KEY=VALUE`` pairs as a dict, each value read as YAML (numbers, booleans,
    lists) so that ``num_hidden_layers=4`` is the int 4."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--hf-config {pair!r}: expected KEY=VALUE")
        out[key] = yaml.safe_load(value)
    return out


@dataclass
class Preprocess:
    """What an encoder does to frames before the model: clips of ``clip_len`` frames,
    shorter side resized to ``resize``, centre crop ``crop`` x ``crop``, ``(x / 255 - mean)
    / std``, and the layout the model reads: ``'NCTHW'`` or ``'NTCHW'``."""
    clip_len: int
    resize: int
    crop: int
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    layout: str = "NCTHW"

    def as_dict(self) -> dict:
        return {"clip_len": self.clip_len, "resize": self.resize, "crop": self.crop,
                "mean": list(map(float, self.mean)), "std": list(map(float, self.std)),
                "layout": self.layout}


def centre_crop(frames: np.ndarray, crop: int) -> np.ndarray:
    """The centre ``crop`` x ``crop`` of ``frames`` uint8 ``[..., H, W, 3]`` (H, W >= crop)."""
    h, w = frames.shape[-3:-1]
    top, left = (h - crop) // 2, (w - crop) // 2
    return frames[..., top:top + crop, left:left + crop, :]


class Encoder:
    """A video model behind the one interface.  Subclasses set ``model`` (an
    ``nn.Module``), ``pre`` (:class:`Preprocess`), ``head`` (the classifier layer whose
    input is the embedding, or None when the model's output is the embedding) and
    ``settings`` (what rebuilds it: written to extraction.json)."""

    model: torch.nn.Module
    pre: Preprocess
    head: Optional[torch.nn.Module] = None
    settings: dict

    def __init__(self):
        self.device = torch.device("cpu")
        self.amp_dtype: Optional[torch.dtype] = None

    def to(self, device: torch.device, amp: Optional[torch.dtype] = None) -> "Encoder":
        """Move to ``device``; ``amp``: autocast dtype for the forward (GPU: float16 or
        bfloat16), None for full precision."""
        self.device = torch.device(device)
        self.model.to(self.device)
        self.amp_dtype = amp
        return self

    def crop(self, frames: np.ndarray) -> np.ndarray:
        """The decode workers' share: centre crop of frames already resized by the decoder
        to shorter side ``pre.resize``."""
        return centre_crop(frames, self.pre.crop)

    def normalise(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 ``[N, T, crop, crop, 3]`` -> the model's float input in its layout."""
        x = clips.to(self.device, non_blocking=True).float().div_(255.0)
        mean = torch.tensor(self.pre.mean, device=x.device)
        std = torch.tensor(self.pre.std, device=x.device)
        x = (x - mean) / std                                       # [N, T, H, W, 3]
        order = (0, 4, 1, 2, 3) if self.pre.layout == "NCTHW" else (0, 1, 4, 2, 3)
        return x.permute(*order).contiguous()

    def forward(self, x: torch.Tensor):
        """The model's output for the normalised input ``x``: logits ``[N, C]`` (or, for a
        model without a classifier, the embedding itself)."""
        return self.model(x)

    @torch.inference_mode()
    def __call__(self, clips: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``(embeddings float32 [N, D], logits float32 [N, C] or None)`` of uint8 clips."""
        x = self.normalise(clips)
        seen = []
        hook = self.head.register_forward_hook(lambda m, i, o: seen.append(i[0])) if self.head else None
        try:
            with torch.autocast(self.device.type, dtype=self.amp_dtype,
                                enabled=self.amp_dtype is not None):
                out = self.forward(x)
        finally:
            if hook is not None:
                hook.remove()
        if isinstance(out, (tuple, list)):        # a custom encoder's (embedding, logits)
            emb, logits = out[0], (out[1] if len(out) > 1 else None)
        elif self.head is None:
            emb, logits = out, None
        else:
            emb, logits = seen[0], out
        if emb.dim() > 2:                         # a convolutional head's input: pool it
            emb = emb.flatten(2).mean(2)
        emb = emb.float()
        return emb, (None if logits is None else logits.float().reshape(len(emb), -1))

    def dims(self) -> tuple[int, int]:
        """``(D, C)``: embedding size and number of logits (0 without a classifier), from
        one forward pass of a black clip."""
        clip = torch.zeros(1, self.pre.clip_len, self.pre.crop, self.pre.crop, 3, dtype=torch.uint8)
        emb, logits = self(clip)
        return emb.shape[1], 0 if logits is None else logits.shape[1]


def seeded_init(seed: int):
    """The RNG state random-init weights are drawn from: the same seed gives the same
    weights on every rank and every re-run (so a resumed extraction matches)."""
    torch.manual_seed(seed)


def parse_spec(spec: str) -> tuple[str, str]:
    """``(kind, rest)`` of an encoder spec; ValueError listing the kinds when it is none."""
    kind, _, rest = spec.partition(":")
    if kind not in KINDS or not rest:
        raise ValueError(f"unknown encoder {spec!r}; use one of hf:ID_OR_DIR_OR_MODEL_TYPE, "
                         f"torchvision:NAME, torchscript:PATH, python:MODULE:FACTORY")
    return kind, rest


def build_encoder(spec: str, random_init: bool = False, seed: int = 0,
                  trust_remote_code: bool = False, overrides: Optional[dict] = None,
                  clip_len: Optional[int] = None, crop: Optional[int] = None) -> Encoder:
    """The encoder named ``spec`` (``kind:rest``; see the module docstring).

    ``random_init`` builds the architecture without weights (seeded by ``seed``;
    :func:`dejavid.extract.pipeline.extract` and the written config say loudly that the
    features mean nothing); ``overrides``: config keys for a
    Hugging Face architecture (``hf:MODEL_TYPE`` with ``random_init``); ``clip_len`` and
    ``crop`` replace the encoder's own frames per clip and crop size."""
    kind, rest = parse_spec(spec)
    module = importlib.import_module(KINDS[kind], __package__)
    if random_init:
        seeded_init(seed)
    enc = module.build(kind, rest, random_init=random_init, trust_remote_code=trust_remote_code,
                       overrides=overrides or {})
    if clip_len is not None:
        if clip_len < 1:
            raise ValueError(f"--clip-len {clip_len}: a clip needs at least 1 frame")
        enc.pre.clip_len = clip_len
    if crop is not None:
        if crop < 1:
            raise ValueError(f"--crop {crop} must be at least 1 pixel")
        # keep the encoder's resize-to-crop ratio (e.g. 128 -> 112 for torchvision's R(2+1)D)
        enc.pre.resize, enc.pre.crop = max(crop, round(enc.pre.resize * crop / enc.pre.crop)), crop
    enc.model.eval()
    enc.settings = {"spec": spec, "random_init": random_init, "seed": seed if random_init else None,
                    "trust_remote_code": trust_remote_code, "overrides": overrides or {},
                    **enc.settings, "preprocess": enc.pre.as_dict()}
    return enc
