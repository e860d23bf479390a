"""Classes for new raw videos: a trained checkpoint + the encoder its features came from.

    videos     the classifier: decode and encode new videos exactly as the training
               features were made (extraction settings carried in the checkpoint), then
               rank the classes by DejaVid distance
    inputs     what ``predict.py`` is given (files, folders, a CSV manifest) and the CSV
               it writes

It sits above the extraction layer (decoding, encoders) and the training layer
(checkpoints): the only layer that needs both.
"""
from __future__ import annotations

from .. import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".videos": ["Prediction", "VideoClassifier", "load_classifier", "predict_videos"],
    ".inputs": ["list_inputs", "write_predictions_csv"],
})
