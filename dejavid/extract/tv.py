"""``torchvision:NAME``: every model of ``torchvision.models.video`` with its weights' own
transforms (frames per clip, resize, crop, mean and std).

torchvision is imported only here and only when such an encoder is asked for: on a
machine where its wheel does not import (e.g. a CUDA-linked torchvision beside a CPU
torch) the rest of the package works and this says what to install.  The embedding is
the input of the final classifier layer (``fc``, ``head`` or S3D's 1x1 convolution,
pooled), the logits its output.
"""
from __future__ import annotations

from ..errors import MissingDependency
from .encoders import Encoder, Preprocess

# name -> (attribute of the classifier layer, frames per clip the weights were trained on)
MODELS = {
    "r3d_18": ("fc", 16), "mc3_18": ("fc", 16), "r2plus1d_18": ("fc", 16),
    "s3d": ("classifier", 16),
    "mvit_v1_b": ("head", 16), "mvit_v2_s": ("head", 16),
    "swin3d_t": ("head", 16), "swin3d_s": ("head", 16), "swin3d_b": ("head", 16),
}


def import_torchvision():
    """``torchvision.models`` or MissingDependency saying why it does not import."""
    try:
        import torchvision.models as models
    except (ImportError, OSError) as exc:
        raise MissingDependency(f"torchvision: encoders need a torchvision that matches your "
                                f"torch (import failed: {exc}); install the pair from "
                                f"https://pytorch.org (same CUDA or CPU build)") from exc
    return models


class TorchvisionEncoder(Encoder):
    def __init__(self, name: str, random_init: bool):
        super().__init__()
        if name not in MODELS:
            raise ValueError(f"unknown torchvision video model {name!r}; one of "
                             f"{', '.join(sorted(MODELS))}")
        models = import_torchvision()
        weights = models.get_model_weights(name).DEFAULT
        self.model = models.get_model(name, weights=None if random_init else weights)
        head_attr, frames = MODELS[name]
        self.head = getattr(self.model, head_attr)
        t = weights.transforms()              # VideoClassification: the weights' own numbers
        crop = t.crop_size[0] if isinstance(t.crop_size, (list, tuple)) else t.crop_size
        resize = t.resize_size[0] if isinstance(t.resize_size, (list, tuple)) else t.resize_size
        self.pre = Preprocess(clip_len=frames, resize=int(resize), crop=int(crop),
                              mean=tuple(t.mean), std=tuple(t.std), layout="NCTHW")
        self.settings = {"weights": None if random_init else str(weights),
                         "class_names": None if random_init else list(weights.meta["categories"])}


def build(kind: str, name: str, random_init: bool, trust_remote_code: bool, overrides: dict):
    return TorchvisionEncoder(name, random_init)
