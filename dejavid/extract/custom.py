"""Your own encoder: ``torchscript:PATH`` (``torch.jit.load``) or
``python:MODULE:FACTORY`` (``FACTORY()`` returns an ``nn.Module``).

The contract: the module receives float32 clips ``[N, 3, T, H, W]``, values in [0, 1]
(mean 0, std 1 here: normalise inside the module), resized to shorter side 128 and
centre-cropped to 112 unless ``--crop`` says otherwise, ``--clip-len`` frames (16 by
default); it returns the embeddings ``[N, D]``, or a tuple ``(embeddings [N, D],
logits [N, C])``.  A factory may set ``clip_len`` and ``crop`` attributes on the
module as its defaults.  ``random_init`` does not apply: the module is what you built.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import torch

from .encoders import Encoder, Preprocess


class CustomEncoder(Encoder):
    def __init__(self, kind: str, target: str):
        super().__init__()
        if kind == "torchscript":
            if not Path(target).is_file():
                raise FileNotFoundError(f"TorchScript encoder {target} not found; check the path")
            self.model = torch.jit.load(target, map_location="cpu")
        else:
            mod_name, _, factory = target.partition(":")
            if not factory:
                raise ValueError(f"python:{target}: expected python:MODULE:FACTORY")
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))      # modules beside the user's command
            try:
                module = importlib.import_module(mod_name)
            except ImportError as exc:
                raise ValueError(f"python:{target}: cannot import {mod_name} ({exc})") from exc
            if not callable(getattr(module, factory, None)):
                raise ValueError(f"python:{target}: {mod_name} has no function {factory}")
            self.model = getattr(module, factory)()
            if not isinstance(self.model, torch.nn.Module):
                raise ValueError(f"python:{target}: {factory}() must return a torch.nn.Module")
        crop = int(getattr(self.model, "crop", 112))
        self.pre = Preprocess(clip_len=int(getattr(self.model, "clip_len", 16)),
                              resize=round(crop * 128 / 112), crop=crop,
                              mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), layout="NCTHW")
        self.head = None
        self.settings = {}


def build(kind: str, target: str, random_init: bool, trust_remote_code: bool, overrides: dict):
    if random_init:
        raise ValueError(f"--random-init does not apply to {kind}: encoders (the module is yours)")
    return CustomEncoder(kind, target)
