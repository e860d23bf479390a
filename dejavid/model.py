"""The DejaVid layer: per-class centroid series and per-step, per-feature weights (DESIGN 4, 6)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as Fn

from .alignment import align


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


def count_parameters(model: DejaVid) -> int:
    """Numbers in mu and theta (2 * C * K * F)."""
    return sum(p.numel() for p in model.parameters())
