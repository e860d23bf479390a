"""AdamW over DejaVid's two parameter groups and its per-epoch learning-rate schedule
(docs/DESIGN.md section 6)."""
from __future__ import annotations

import math

import torch

from ..model.layer import DejaVid
from ..config.settings import OptimSpec


def build_optimizer(model: DejaVid, spec: OptimSpec) -> torch.optim.AdamW:
    """AdamW: theta at ``spec.lr``, mu at ``lr / ms_lr_div``, each group with its own betas.

    ``weight_decay`` is the optimizer-wide default, so it reaches both groups (each decays
    at its own learning rate), as the original's AdamW default of 0.01 does.  A frozen
    parameter (``freeze_centroids``: mu; ``freeze_weights``: theta) gets no gradient and
    no group, so neither the update nor the decoupled weight decay can move it.
    """
    groups = []
    if spec.freeze_weights:
        model.theta.requires_grad_(False)
    else:
        groups.append({"params": [model.theta], "lr": spec.lr, "betas": tuple(spec.betas),
                       "name": "theta"})
    if spec.freeze_centroids:
        model.mu.requires_grad_(False)
    else:
        groups.append({"params": [model.mu], "lr": spec.lr / spec.ms_lr_div,
                       "betas": tuple(spec.mu_betas), "name": "mu"})
    head = list(model.head.parameters())     # the temperature head's log tau; none for zscore
    if head:
        groups.append({"params": head, "lr": spec.lr, "betas": tuple(spec.betas),
                       "weight_decay": 0.0, "name": "head"})
    if model.pool is not None:                # several prototypes per class: the soft-min's log t
        groups.append({"params": list(model.pool.parameters()), "lr": spec.lr,
                       "betas": tuple(spec.betas), "weight_decay": 0.0, "name": "pool"})
    return torch.optim.AdamW(groups, weight_decay=spec.weight_decay)


def lr_factor(epoch: int, num_epochs: int, warmup_epochs: int = 0, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier for ``epoch`` (0-based): linear warmup, then cosine annealing
    from 1 down to ``min_ratio``."""
    if epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    span = max(1, num_epochs - warmup_epochs)
    t = min(1.0, (epoch - warmup_epochs) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(optimizer, spec: OptimSpec, num_epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """:func:`lr_factor` as a LambdaLR, stepped once per epoch."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: lr_factor(e, num_epochs, spec.warmup_epochs, spec.min_lr_ratio))
