"""An "original-style" DejaVid distance, written the way a straightforward
PyTorch implementation of the paper does it, used only as a benchmark baseline.

Per sample (a Python loop over the batch):
  1. local cost by broadcasting over 128-feature blocks, each block building a
     [C, K, T, 128] temporary;
  2. the DTW recursion as a Python loop over cells (vectorised over classes),
     then backtracking per class with the tie rules of docs/DESIGN.md section 3;
  3. the path turned into per-cell linear pieces: with s = sign(mu - x_j),
     |mu - x_j| = s * mu - s * x_j, so along the path
        d = sum_{i,f} w * (slope * mu + intercept),
        slope = sum_{j in J(i)} s,   intercept = -sum_{j in J(i)} s * x_j,
     both materialised as [B, C, K, F] tensors.
The distance is then one expression of (mu, w) and autograd differentiates
through the [B, C, K, F] tensors.  Gradients reach mu and theta only: in the
original, features are pre-extracted and frozen.
"""
from __future__ import annotations

import numpy as np
import torch

BLOCK = 128


def _local_cost(xb: torch.Tensor, mu: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """[C, K, T] for one sample xb [T, F]."""
    C, K, F = mu.shape
    D = xb.new_zeros(C, K, xb.shape[0])
    for f0 in range(0, F, BLOCK):
        f1 = min(F, f0 + BLOCK)
        diff = mu[:, :, None, f0:f1] - xb[None, None, :, f0:f1]  # [C, K, T, 128]
        D += (w[:, :, None, f0:f1] * diff.abs()).sum(-1)
    return D


def _accumulate(D: torch.Tensor, hvd: bool) -> torch.Tensor:
    """DTW recursion over cells, vectorised over classes: [C, K, T] -> [C, K, T]."""
    C, K, T = D.shape
    A = torch.empty_like(D)
    for i in range(K):
        for j in range(T):
            if i == 0 and j == 0:
                A[:, 0, 0] = D[:, 0, 0]
            elif i == 0:
                A[:, 0, j] = D[:, 0, j] + A[:, 0, j - 1]
            elif j == 0:
                A[:, i, 0] = D[:, i, 0] + A[:, i - 1, 0]
            else:
                best = torch.minimum(A[:, i - 1, j], A[:, i, j - 1])
                if hvd:
                    best = torch.minimum(best, A[:, i - 1, j - 1])
                A[:, i, j] = D[:, i, j] + best
    return A


def _backtrack_mask(A: np.ndarray, hvd: bool) -> np.ndarray:
    """Boolean path mask [C, K, T] of every class from the accumulated cost."""
    C, K, T = A.shape
    mask = np.zeros((C, K, T), dtype=bool)
    for c in range(C):
        a_c = A[c]
        i, j = K - 1, T - 1
        mask[c, i, j] = True
        while i > 0 or j > 0:
            if i == 0:
                j -= 1
            elif j == 0:
                i -= 1
            elif hvd:
                up, left, diag = a_c[i - 1, j], a_c[i, j - 1], a_c[i - 1, j - 1]
                if up < left and up < diag:
                    i -= 1
                elif left < diag:
                    j -= 1
                else:
                    i, j = i - 1, j - 1
            elif a_c[i - 1, j] < a_c[i, j - 1]:
                i -= 1
            else:
                j -= 1
            mask[c, i, j] = True
    return mask


def _linear_pieces(xb, mu, mask):
    """slope, intercept [C, K, F] of one sample along its path mask [C, K, T]."""
    C, K, F = mu.shape
    slope = mu.new_zeros(C, K, F)
    intercept = mu.new_zeros(C, K, F)
    m = mask[..., None].to(mu.dtype)  # [C, K, T, 1]
    for f0 in range(0, F, BLOCK):
        f1 = min(F, f0 + BLOCK)
        s = torch.sign(mu[:, :, None, f0:f1] - xb[None, None, :, f0:f1]) * m  # [C, K, T, 128]
        slope[..., f0:f1] = s.sum(2)
        intercept[..., f0:f1] = -(s * xb[None, None, :, f0:f1]).sum(2)
    return slope, intercept


def original_style_align(x: torch.Tensor, offsets: torch.Tensor, mu: torch.Tensor,
                         theta: torch.Tensor, step_pattern: str = "hv") -> torch.Tensor:
    """dist [B, C], differentiable w.r.t. mu and theta (x is treated as data)."""
    hvd = step_pattern == "hvd"
    w = theta.exp()
    slopes, intercepts = [], []
    with torch.no_grad():
        for b in range(offsets.numel() - 1):
            xb = x[int(offsets[b]):int(offsets[b + 1])].detach()
            A = _accumulate(_local_cost(xb, mu, w), hvd)
            mask = torch.from_numpy(_backtrack_mask(A.cpu().numpy(), hvd)).to(x.device)
            slope, intercept = _linear_pieces(xb, mu, mask)
            slopes.append(slope)
            intercepts.append(intercept)
    slope = torch.stack(slopes)          # [B, C, K, F]
    intercept = torch.stack(intercepts)  # [B, C, K, F]
    return (w * (slope * mu + intercept)).sum((2, 3))
