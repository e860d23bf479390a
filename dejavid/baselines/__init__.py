"""The baselines beside DejaVid that never reach the training engine: the classic ones
(mean pooling + logistic regression, 1-NN DTW, nearest centroid), the encoder's own
clip-averaged logits, and two learned temporal heads (BiGRU, attentive probe).

    classic          the computations of the classic baselines
    encoder          the encoder's logits averaged over a video's clips
    temporal_heads   GRUClassifier, AttentiveProbeClassifier
"""
from __future__ import annotations

from .. import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".temporal_heads": ["GRUClassifier", "AttentiveProbeClassifier"],
    ".encoder": ["EncoderLogits"],
    ".classic": ["mean_pool", "fit_pooled_lr", "knn_class_distances", "centroid_distances"],
})
