"""The model layer: the DejaVid layer (per-class centroid series, per-step per-feature
weights, logit heads), its DBA centroid initialisation with the on-disk cache, and the
ranking of classes by distance.

    layer       DejaVid, its logit heads and the loss (docs/DESIGN.md sections 4, 6)
    centroids   DTW barycenter averaging and the centroid cache (section 5)
    metrics     top-1 / top-k from class distances
"""
from __future__ import annotations

from .. import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".layer": ["DejaVid", "loss_fn", "count_parameters", "standardized_logits"],
    ".centroids": ["dba", "load_or_compute_centroids"],
    ".metrics": ["rank_classes", "topk_counts"],
})
