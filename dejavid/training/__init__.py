"""The training layer: fit() (centroids, the epoch loop, checkpoints and resume) and what it
is made of -- epoch passes, optimiser and schedule, batching, torchrun plumbing, RNG state,
signals, the metrics log, stage timing and per-video predictions.

    run          fit, the run folder and resume
    engine       one training or evaluation pass
    optim        AdamW over the two parameter groups, the learning-rate schedule
    checkpoint   checkpoints read without unpickling code
    batching     which videos form each batch, and the loader
    distributed  torchrun / DDP helpers (no-ops in one process)
    rng, signals, metrics_log, timing, predictions
"""
from __future__ import annotations

from .. import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".run": ["fit", "FitResult", "model_from_checkpoint"],
    ".checkpoint": ["load_checkpoint", "save_checkpoint"],
})
