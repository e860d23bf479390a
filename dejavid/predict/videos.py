"""Classify new raw videos with a trained checkpoint.

    clf = load_classifier("runs/<run>/best.pt")        # encoder rebuilt from the checkpoint
    preds = clf.predict(["a.mp4", "b.mp4"])            # [Prediction(video, classes, distances, error)]

A DejaVid checkpoint only knows the features it was trained on, ``[T, F]`` per video.
For a new video to be comparable, it must be decoded, sampled into clips and encoded
exactly as the training videos were: the same encoder (weights, or the random-init seed
and config), the same clip length, strides, frame rate, crop, logits appended or not,
and the same storage dtype.  ``train_dejavid.py`` and ``reproduce.py`` record those
(extract_tse.py's ``extraction.json`` and ``classes.json`` of the data folder) in every
checkpoint (:func:`dejavid.training.checkpoint.extraction_record`); they can also be
given explicitly: an extraction folder, or an encoder and sampling built by the caller.
A checkpoint trained on features made any other way, with nothing given, is refused
with a message naming the options that supply them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ..config.files import load_config
from ..config.settings import settings_from_config
from ..device import resolve_device
from ..extract.encoders import Encoder
from ..extract.pipeline import ClipBatcher, DecodeJobs, rebuild_from
from ..extract.sampling import Sampling
from ..extract.sources import VideoItem
from ..extract.writer import DTYPES
from ..model.layer import sequence_distances
from ..training.checkpoint import load_checkpoint
from ..training.run import model_from_checkpoint

EXPLICIT = ("--extraction FOLDER (the --out folder of the extract_tse.py run that made the "
            "training features), or --encoder SPEC with that run's --random-init, --seed, "
            "--hf-config KEY=VALUE, --clip-len, --clip-stride, --frame-stride, --num-clips, "
            "--fps, --crop, --append-logits/--no-append-logits and --dtype")


@dataclass
class Prediction:
    """One input video: the ``classes`` nearest first (up to ``top``) and their DejaVid
    ``distances`` (smaller is nearer); ``error`` says why a video gave none (then both
    lists are empty); ``label`` is the class a manifest listed for it, if any."""
    video: str
    classes: list[str] = field(default_factory=list)
    distances: list[float] = field(default_factory=list)
    error: Optional[str] = None
    label: Optional[str] = None


@dataclass
class Extraction:
    """How the training features were made: what turns a video into the model's ``[T, F]``."""
    encoder: Encoder
    sampling: Sampling
    append_logits: bool
    dtype: str = "float32"

    @classmethod
    def from_settings(cls, settings: dict) -> "Extraction":
        """From an extraction.json's contents; ValueError when the encoder cannot be rebuilt."""
        spec = settings["encoder"]["spec"]
        try:
            encoder, sampling = rebuild_from(settings)
        except (ImportError, OSError, ValueError) as exc:
            raise ValueError(f"cannot rebuild the encoder {spec} the training features were "
                             f"made with ({exc}); install what it needs or make its weights "
                             f"reachable, or give it explicitly: {EXPLICIT}") from exc
        return cls(encoder, sampling, settings["append_logits"], settings["dtype"])

    def features(self, clips_emb: torch.Tensor, logits: Optional[torch.Tensor]) -> torch.Tensor:
        """``[T, F]`` float32 as the training files hold them (logits appended, stored dtype)."""
        x = clips_emb if not self.append_logits else torch.cat([clips_emb, logits], dim=1)
        return x.to(DTYPES[self.dtype]).float()

    def feature_size(self) -> int:
        d, c = self.encoder.dims()
        return d + (c if self.append_logits else 0)


class VideoClassifier:
    """A checkpoint's DejaVid layer (free-path alignment, the training split's
    standardisation) and the :class:`Extraction` that feeds it; ``class_names[i]`` names
    the checkpoint's class index ``i``."""

    def __init__(self, ckpt: dict, extraction: Extraction, class_names: list[str],
                 device: torch.device, where: str = "checkpoint"):
        cfg = load_config(None, [], base=dict(ckpt["config"]))
        settings = settings_from_config(cfg)
        F = int(ckpt["model"]["mu"].shape[-1])
        if extraction.feature_size() != F:
            raise ValueError(f"{where} was trained on F = {F} features per step but the encoder "
                             f"{extraction.encoder.settings['spec']} gives F = "
                             f"{extraction.feature_size()}; give the settings of the extraction "
                             f"that made its training features: {EXPLICIT}")
        self.model = model_from_checkpoint(ckpt, settings.model, settings.loop.std_eps).to(device)
        self.model.eval()
        self.stats = ckpt.get("standardize")
        self.extraction, self.class_names, self.device = extraction, class_names, device
        self.extraction.encoder.to(device)

    def sequences(self, paths: list[str], batch_clips: int = 32
                  ) -> tuple[dict[int, torch.Tensor], dict[int, str]]:
        """``({input position: [T, F]}, {input position: why it gave no features})``: each
        file decoded and encoded as the training videos were; a bad file does not stop
        the others."""
        ex = self.extraction
        items = [VideoItem(str(k), str(p), "", "test") for k, p in enumerate(paths)]
        jobs = DecodeJobs(items, ex.sampling, ex.encoder.pre.resize, ex.encoder.pre.crop)
        batcher = ClipBatcher(ex.encoder, batch_clips)
        feats, errors = {}, {}
        for k in range(len(jobs)):
            _, clips, _, reason = jobs[k]
            if reason is not None:
                errors[k] = reason
                continue
            for key, emb, logits in batcher.add(k, clips):
                feats[key] = ex.features(emb, logits)
        for key, emb, logits in batcher.finish():
            feats[key] = ex.features(emb, logits)
        return feats, errors

    def distances(self, tensors: list[torch.Tensor], batch_size: int = 64) -> torch.Tensor:
        """DejaVid distances ``[N, C]`` of ``[T, F]`` sequences (standardised with the
        training split's statistics when the checkpoint was trained so)."""
        return sequence_distances(self.model, tensors, self.stats, batch_size)

    def predict(self, paths: list[str], top: int = 5, labels: Optional[list] = None,
                batch_clips: int = 32) -> list[Prediction]:
        """One :class:`Prediction` per path, in order (``labels``: a known class per path,
        carried into the records)."""
        feats, errors = self.sequences([str(p) for p in paths], batch_clips)
        order = sorted(feats)
        preds = [Prediction(str(p), label=labels[k] if labels else None)
                 for k, p in enumerate(paths)]
        for k, reason in errors.items():
            preds[k].error = reason
        if order:
            dist = self.distances([feats[k] for k in order])
            d, idx = torch.topk(dist, min(top, dist.shape[1]), dim=1, largest=False)
            for n, k in enumerate(order):
                preds[k].classes = [self.class_names[i] for i in idx[n].tolist()]
                preds[k].distances = d[n].tolist()
        return preds


def read_extraction_folder(folder: Path) -> tuple[dict, Optional[dict]]:
    """``(extraction.json, classes.json or None)`` of an extract_tse.py output folder."""
    path = folder / "extraction.json"
    if not path.is_file():
        raise FileNotFoundError(f"--extraction {folder}: no extraction.json there; give the "
                                f"--out folder of an extract_tse.py run")
    classes = folder / "classes.json"
    return (json.loads(path.read_text()),
            json.loads(classes.read_text()) if classes.is_file() else None)


def load_classifier(checkpoint: str | Path, extraction: str | Path | None = None,
                    explicit: Optional[Extraction] = None, device: str = "auto") -> VideoClassifier:
    """The classifier of ``checkpoint`` (a file or a run folder) with the encoder its
    training features were made with: from ``extraction`` (an extract_tse.py output
    folder), else ``explicit``, else the settings the checkpoint carries.

    FileNotFoundError for a missing checkpoint or folder; ValueError when the settings are
    unknown (the message names the options to pass), the encoder cannot be rebuilt, or its
    feature size is not the checkpoint's."""
    ckpt = load_checkpoint(checkpoint)
    record = ckpt.get("extraction")
    classes = None
    if extraction is not None:
        settings, classes = read_extraction_folder(Path(extraction))
        ex = Extraction.from_settings(settings)
    elif explicit is not None:
        ex = explicit
    elif record:
        ex, classes = Extraction.from_settings(record["settings"]), record.get("classes")
    else:
        raise ValueError(f"checkpoint {checkpoint} was trained on features without extraction "
                         f"settings (its data folder held no extraction.json of extract_tse.py), "
                         f"so the encoder and sampling that made them are unknown; give them "
                         f"explicitly: {EXPLICIT}")
    names = [str(classes.get(str(v), v)) if classes else str(v) for v in ckpt["label_values"]]
    return VideoClassifier(ckpt, ex, names, resolve_device(device), where=f"checkpoint {checkpoint}")


def predict_videos(checkpoint: str | Path, paths: list[str], top: int = 5,
                   **kwargs) -> list[Prediction]:
    """``load_classifier(checkpoint, **kwargs).predict(paths, top)``: one record per path."""
    return load_classifier(checkpoint, **kwargs).predict(paths, top)


__all__ = ["Prediction", "Extraction", "VideoClassifier", "load_classifier", "predict_videos"]
