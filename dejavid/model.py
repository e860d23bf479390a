"""The DejaVid layer: per-class centroid series and per-step, per-feature weights (DESIGN 4, 6)."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as Fn

from .align import align


class DejaVid(nn.Module):
    """Distances of variable-length samples to C learned centroid series.

    mu [C, K, F] centroids, theta [C, K, F] log-weights (w = exp(theta)).
    With ``fixed_path`` the alignment path comes from a snapshot taken by
    :meth:`snapshot` (once per epoch); values and gradients use the current
    parameters along it.
    """

    def __init__(self, mu_init: torch.Tensor, step_pattern: str = "hv", fixed_path: bool = True,
                 w_one_init: bool = False, backend: str = "auto",
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        C, K, F = mu_init.shape
        self.mu = nn.Parameter(mu_init.detach().clone().float())
        theta = torch.zeros(C, K, F) if w_one_init else torch.randn(C, K, F, generator=generator)
        self.theta = nn.Parameter(theta)
        self.step_pattern = step_pattern
        self.fixed_path = fixed_path
        self.backend = backend
        self.register_buffer("mu_fixed", torch.empty(0), persistent=False)
        self.register_buffer("theta_fixed", torch.empty(0), persistent=False)

    @property
    def num_classes(self) -> int:
        return self.mu.shape[0]

    @torch.no_grad()
    def snapshot(self) -> None:
        """Freeze the parameters that choose paths (start of each epoch in fixed-path mode)."""
        self.mu_fixed = self.mu.detach().clone()
        self.theta_fixed = self.theta.detach().clone()

    def forward(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """x [N, F], offsets [B + 1] -> distances [B, C]."""
        if offsets.numel() == 1:
            # An empty share of a batch under DDP: no distances, but a graph that reaches
            # the parameters so this rank joins the gradient all-reduce.
            return self.mu.new_zeros(0, self.num_classes) + 0.0 * (self.mu.sum() + self.theta.sum())
        paths = None
        if self.fixed_path:
            if self.mu_fixed.numel() == 0:
                self.snapshot()
            with torch.no_grad():
                _, paths = align(x.detach(), offsets, self.mu_fixed, self.theta_fixed,
                                 self.step_pattern, backend=self.backend)
        dist, _ = align(x, offsets, self.mu, self.theta, self.step_pattern, paths=paths,
                        backend=self.backend)
        return dist


def standardized_logits(dist: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """z = -d standardised per sample across classes: (z - mean) / (std + eps)."""
    z = -dist
    return (z - z.mean(1, keepdim=True)) / (z.std(1, keepdim=True) + eps)


def loss_fn(dist: torch.Tensor, labels: torch.Tensor, eps: float = 1e-6,
            reduction: str = "mean") -> torch.Tensor:
    return Fn.cross_entropy(standardized_logits(dist, eps), labels, reduction=reduction)


def build_optimizer(model: DejaVid, cfg: dict) -> torch.optim.AdamW:
    """AdamW: theta at lr, mu at lr / ms_lr_div, each group with its own betas.

    ``weight_decay`` is the optimizer-wide default, so it reaches both groups (each decays
    at its own learning rate), as the original's AdamW default of 0.01 does.  A frozen
    parameter (``freeze_centroids``: mu; ``freeze_weights``: theta) gets no gradient and
    no group, so neither the update nor the decoupled weight decay can move it.
    """
    if cfg["freeze_centroids"] and cfg["freeze_weights"]:
        raise ValueError("freeze_centroids and freeze_weights are both true: nothing would be "
                         "trained; set one of them to false")
    groups = []
    if cfg["freeze_weights"]:
        model.theta.requires_grad_(False)
    else:
        groups.append({"params": [model.theta], "lr": cfg["lr"], "betas": tuple(cfg["betas"]),
                       "name": "theta"})
    if cfg["freeze_centroids"]:
        model.mu.requires_grad_(False)
    else:
        groups.append({"params": [model.mu], "lr": cfg["lr"] / cfg["ms_lr_div"],
                       "betas": tuple(cfg["mu_betas"]), "name": "mu"})
    return torch.optim.AdamW(groups, weight_decay=cfg["weight_decay"])


def lr_factor(epoch: int, num_epochs: int, warmup_epochs: int = 0, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier for ``epoch`` (0-based): linear warmup, then cosine annealing."""
    if epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    span = max(1, num_epochs - warmup_epochs)
    t = min(1.0, (epoch - warmup_epochs) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(optimizer, cfg: dict) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per epoch."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: lr_factor(e, cfg["num_epochs"], cfg["warmup_epochs"], cfg["min_lr_ratio"]))


def count_parameters(model: DejaVid) -> int:
    return sum(p.numel() for p in model.parameters())
