"""The DejaVid layer: per-class centroid series and per-step, per-feature weights, and its
logit heads (docs/DESIGN.md sections 4, 6)."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as Fn

from ..alignment.op import align
from ..config.settings import LOGIT_HEADS
from ..data.dataset import packed_to
from ..data.packing import RowSource, gather


class DejaVid(nn.Module):
    """Distances of variable-length samples to C learned centroid series.

    mu [C, K, F] centroids, theta [C, K, F] log-weights (w = exp(theta)).
    With ``fixed_path`` the alignment path comes from a snapshot taken by
    :meth:`snapshot` (once per epoch); values and gradients use the current
    parameters along it.
    """

    def __init__(self, mu_init: torch.Tensor, step_pattern: str = "hv", fixed_path: bool = True,
                 w_one_init: bool = False, backend: str = "auto",
                 generator: Optional[torch.Generator] = None, logit_head: str = "zscore",
                 std_eps: float = 1e-6, band: Optional[float] = None,
                 proto_class: Optional[torch.Tensor] = None,
                 proto_rows: Optional[torch.Tensor] = None, resample_inputs: bool = False,
                 open_ends: bool = False):
        super().__init__()
        C, K, F = mu_init.shape
        self.mu = nn.Parameter(mu_init.detach().clone().float())
        theta = torch.zeros(C, K, F) if w_one_init else torch.randn(C, K, F, generator=generator)
        self.theta = nn.Parameter(theta)
        self.step_pattern = step_pattern
        self.fixed_path = fixed_path
        self.backend = backend
        self.band = band
        # Every sample resampled to K steps before it is aligned (config key
        # resample_inputs; docs/DESIGN.md section 4.2.2): off is the paper's.
        self.resample_inputs = bool(resample_inputs)
        # Each sample matched in full to a stretch of each centroid (config key open_ends;
        # docs/DESIGN.md section 3.3.2): off is the paper's.
        self.open_ends = bool(open_ends)
        self.head = make_head(logit_head, std_eps)
        # Several prototype series per class (mu, theta are then [P, K, F]): their distances
        # are pooled per class by a soft minimum.  One per class (the paper) has no pool.
        self.pool = None if proto_class is None or is_one_per_class(proto_class) \
            else SoftMinPool(proto_class, proto_rows)
        self.register_buffer("mu_fixed", torch.empty(0), persistent=False)
        self.register_buffer("theta_fixed", torch.empty(0), persistent=False)

    @property
    def num_classes(self) -> int:
        return self.mu.shape[0] if self.pool is None else self.pool.num_classes

    @torch.no_grad()
    def snapshot(self) -> None:
        """Freeze the parameters that choose paths (start of each epoch in fixed-path mode)."""
        self.mu_fixed = self.mu.detach().clone()
        self.theta_fixed = self.theta.detach().clone()

    def forward(self, x: torch.Tensor, offsets: torch.Tensor,
                rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x [N, F], offsets [B + 1] -> distances [B, C] (per class: the soft minimum
        over its prototypes when there are several).  ``rows`` [B] (the samples' index
        rows, given in training): a sample's own prototype (``centroids_per_class: all``)
        is left out of its class's soft minimum."""
        dist = self.prototype_distances(x, offsets)
        if self.pool is None:
            return dist
        return self.pool(dist, rows if self.training else None)

    def prototype_distances(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """x [N, F], offsets [B + 1] -> distances [B, P] to every prototype series."""
        if offsets.numel() == 1:
            # An empty share of a batch under DDP: no distances, but a graph that reaches
            # the parameters so this rank joins the gradient all-reduce.
            extra = list(self.head.parameters()) + \
                (list(self.pool.parameters()) if self.pool is not None else [])
            reach = self.mu.sum() + self.theta.sum() + sum(p.sum() for p in extra)
            return self.mu.new_zeros(0, self.mu.shape[0]) + 0.0 * reach
        if self.resample_inputs:
            x, offsets = resample_packed(x, offsets, self.mu.shape[1])
        paths = None
        if self.fixed_path:
            if self.mu_fixed.numel() == 0:
                self.snapshot()
            with torch.no_grad():
                _, paths = align(x.detach(), offsets, self.mu_fixed, self.theta_fixed,
                                 self.step_pattern, backend=self.backend, band=self.band,
                                 open_ends=self.open_ends)
        dist, _ = align(x, offsets, self.mu, self.theta, self.step_pattern, paths=paths,
                        backend=self.backend, band=self.band, open_ends=self.open_ends)
        return dist


def resample_packed(x: torch.Tensor, offsets: torch.Tensor,
                    K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample of x [N, F] (offsets [B + 1]) resampled to K steps by linear
    interpolation with aligned corners, as the centroid initialisation resamples the
    training series (dejavid.model.centroids.resample): (x [B * K, F], offsets [B + 1]).
    Step k of a T-step sample sits at k (T - 1) / (K - 1); a one-step sample is repeated.
    Differentiable with respect to x; samples of K steps come back unchanged, bitwise."""
    lengths = (offsets[1:] - offsets[:-1]).to(torch.float64)                 # [B]
    B = lengths.numel()
    if B and bool((lengths == K).all()):
        return x, offsets
    k = torch.arange(K, dtype=torch.float64, device=x.device)
    pos = k.view(1, -1) * ((lengths.view(-1, 1) - 1) / max(K - 1, 1))         # [B, K]
    if K == 1:
        pos = torch.zeros_like(pos)
    lo = pos.floor().clamp(min=0)
    lo = torch.minimum(lo, (lengths.view(-1, 1) - 2).clamp(min=0))
    frac = (pos - lo).to(x.dtype).unsqueeze(-1)                               # [B, K, 1]
    hi = torch.minimum(lo + 1, lengths.view(-1, 1) - 1)
    start = offsets[:-1].view(-1, 1).to(x.device)
    a = x[(start + lo.long()).flatten()].view(B, K, -1)
    b = x[(start + hi.long()).flatten()].view(B, K, -1)
    out = (a * (1 - frac) + b * frac).reshape(B * K, -1)
    return out, torch.arange(B + 1, dtype=offsets.dtype, device=offsets.device) * K


def is_one_per_class(proto_class: torch.Tensor) -> bool:
    """True when ``proto_class`` [P] is 0, 1, ..., C - 1: one prototype per class, in order."""
    return torch.equal(proto_class.cpu().long(), torch.arange(proto_class.numel()))


class SoftMinPool(nn.Module):
    """Class distances [B, C] from prototype distances [B, P]: per class c with prototypes
    p_1 .. p_m, d_c = -t log(mean_k exp(-d_pk / t)), a soft minimum at temperature
    t = exp(log_temperature) (learned).

    The mean (not the sum) inside keeps a class with one prototype at exactly its
    distance and does not favour classes that have more prototypes; d_c lies between
    the class's minimum and mean distance, the minimum as t -> 0.  :meth:`calibrate`
    sets t from the initial distances so that the pool starts soft.

    ``proto_rows`` [P] (``centroids_per_class: all``): the index row of the one training
    video each prototype is (-1: none).  Given the rows of a batch, :meth:`forward`
    leaves each video's own prototype out of its class's mean (unless it is the class's
    only one): otherwise a training video would sit at distance ~0 from its class and
    teach nothing (leave-one-out, as 1-NN's error is estimated).
    """

    def __init__(self, proto_class: torch.Tensor, proto_rows: Optional[torch.Tensor] = None):
        super().__init__()
        proto_class = proto_class.detach().cpu().long()
        C = int(proto_class.max()) + 1
        counts = torch.bincount(proto_class, minlength=C)
        if bool((counts == 0).any()):
            raise ValueError(f"every class needs a prototype; classes "
                             f"{(counts == 0).nonzero().flatten().tolist()} have none")
        members = torch.full((C, int(counts.max())), -1, dtype=torch.long)   # [C, Mmax]
        for c in range(C):
            idx = (proto_class == c).nonzero().flatten()
            members[c, :idx.numel()] = idx
        self.register_buffer("proto_class", proto_class)
        self.register_buffer("members", members, persistent=False)
        self.register_buffer("counts", counts, persistent=False)  # int64: .double() keeps it exact
        self.log_temperature = nn.Parameter(torch.zeros(()))
        if proto_rows is not None:
            proto_rows = proto_rows.detach().cpu().long()
            if proto_rows.shape != proto_class.shape:
                raise ValueError(f"proto_rows {tuple(proto_rows.shape)} must have one row per "
                                 f"prototype {tuple(proto_class.shape)}")
            self.register_buffer("proto_rows", proto_rows)
        else:
            self.proto_rows = None

    @property
    def num_classes(self) -> int:
        return self.members.shape[0]

    def forward(self, dist: torch.Tensor, rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """dist [B, P] -> [B, C]; ``rows`` [B]: leave each sample's own prototype out."""
        t = torch.exp(self.log_temperature)
        z = (-dist / t)[:, self.members.clamp(min=0)]                       # [B, C, Mmax]
        absent = (self.members < 0).expand_as(z)
        if rows is not None and self.proto_rows is not None and rows.numel():
            src = self.proto_rows[self.members.clamp(min=0)].masked_fill(self.members < 0, -1)
            own = src.unsqueeze(0) == rows.to(src.device).view(-1, 1, 1)    # [B, C, Mmax]
            own &= (self.counts > 1).view(1, -1, 1)   # a class's only prototype stays
            absent = absent | own
        z = z.masked_fill(absent, float("-inf"))
        n = (~absent).sum(-1).to(z.dtype)                                   # [B, C]
        return -t * (torch.logsumexp(z, -1) - n.log())

    @torch.no_grad()
    def calibrate(self, dist: torch.Tensor) -> None:
        """Set t to the spread of the distances ``dist`` [N, P] among each class's prototypes
        (root mean square deviation from the class's mean, over classes with several)."""
        sq, n = 0.0, 0
        for c in range(self.num_classes):
            idx = self.members[c][self.members[c] >= 0]
            if idx.numel() > 1:
                d = dist[:, idx].double()
                sq += float((d - d.mean(1, keepdim=True)).pow(2).sum())
                n += d.numel()
        spread = math.sqrt(sq / n) if n else 1.0
        if not math.isfinite(spread) or spread <= 0.0:
            spread = 1.0
        self.log_temperature.fill_(math.log(spread))


@torch.no_grad()
def sequence_distances(model: DejaVid, tensors: list, stats=None,
                       batch_size: int = 64) -> torch.Tensor:
    """DejaVid distances [N, C] of ``[T, F]`` sequences, ``batch_size`` at a time on the
    model's device, standardised with ``stats`` (the training split's, or None) as the
    training batches were.  Reads the model only (its ``fixed_path`` is the caller's)."""
    device = model.mu.device
    rows = RowSource.from_tensors(tensors)
    out = []
    for s in range(0, len(tensors), batch_size):
        x, offsets = gather(rows, range(s, min(len(tensors), s + batch_size)), stats)
        out.append(model(packed_to(x, device), offsets.to(device)).cpu())   # [B, C]
    return torch.cat(out)


def standardized_logits(dist: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """z = -d standardised per sample across classes: (z - mean) / (std + eps)."""
    z = -dist
    return (z - z.mean(1, keepdim=True)) / (z.std(1, keepdim=True) + eps)


class ZScoreHead(nn.Module):
    """The paper's logits: -d standardised per sample across the C classes.

    Scale-free, but with C = 2 every standardised logit is +-1/sqrt(2) whatever
    the distances, so the loss is a step function of d and its gradient is zero
    (up to ``eps``); with C = 3 one degree of freedom is left.  Kept for the
    paper's configs (hmdb51, k400, ssv2).
    """
    # Whether calibrate() wants the initial training distances (engine.calibrate_head
    # skips that pass otherwise).
    calibrated_from_data = False

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, dist: torch.Tensor) -> torch.Tensor:
        return standardized_logits(dist, self.eps)

    def calibrate(self, dist: torch.Tensor) -> None:
        """Nothing to set from data (the z-score is scale-free per sample)."""


class TemperatureHead(nn.Module):
    """Logits -d / tau with one learned scalar tau = exp(log_temperature).

    Softmax ignores a per-sample shift, so -d / tau trains for every C >= 2:
    the gradient with respect to d is (softmax - onehot) / tau, non-zero
    whenever the prediction is not certain.  The distances' scale (it grows
    with K + T, F and the weights) is absorbed by tau, which
    :meth:`calibrate` sets from data before training so that the centred
    logits have unit spread.
    """
    calibrated_from_data = True

    def __init__(self):
        super().__init__()
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, dist: torch.Tensor) -> torch.Tensor:
        return -dist * torch.exp(-self.log_temperature)

    # A sample whose own spread exceeds this multiple of the median sample's is left out of
    # the calibration (see calibrate).
    OUTLIER_FACTOR = 10.0

    @torch.no_grad()
    def calibrate(self, dist: torch.Tensor) -> None:
        """Set tau to the spread of ``dist`` [N, C] around each sample's mean over classes
        (root mean square over samples and classes).

        Samples whose own spread is more than :attr:`OUTLIER_FACTOR` times the median
        sample's are left out: distances grow with a video's length, so one video thousands
        of steps long among short ones would otherwise set tau for all of them (and make
        every other logit nearly zero).  Without such samples the result is unchanged."""
        centred = (dist - dist.mean(1, keepdim=True)).double()
        own = centred.pow(2).mean(1).sqrt()   # [N] each sample's spread
        typical = float(own.median()) if own.numel() else 0.0
        keep = own <= self.OUTLIER_FACTOR * typical
        if math.isfinite(typical) and typical > 0.0 and not bool(keep.all()):
            centred = centred[keep]
        spread = float(centred.pow(2).mean().sqrt())
        if not math.isfinite(spread) or spread <= 0.0:
            spread = 1.0  # all distances equal: nothing to scale, keep tau = 1
        self.log_temperature.fill_(math.log(spread))


def make_head(name: str, std_eps: float = 1e-6) -> nn.Module:
    """The logit head named by config key ``logit_head``."""
    if name == "zscore":
        return ZScoreHead(std_eps)
    if name == "temperature":
        return TemperatureHead()
    raise ValueError(f"config key 'logit_head' must be one of {', '.join(LOGIT_HEADS)}, "
                     f"got {name!r}")


def loss_fn(dist: torch.Tensor, labels: torch.Tensor, eps: float = 1e-6,
            reduction: str = "mean", head: Optional[nn.Module] = None) -> torch.Tensor:
    """Cross-entropy of the logits of ``dist`` [B, C]; ``head`` (a model's ``.head``) makes them,
    the paper's per-sample z-score with ``eps`` when it is None."""
    logits = standardized_logits(dist, eps) if head is None else head(dist)
    return Fn.cross_entropy(logits, labels, reduction=reduction)


def count_parameters(model: DejaVid) -> int:
    """Numbers in mu, theta (2 * C * K * F) and the logit head (1 for the temperature head)."""
    return sum(p.numel() for p in model.parameters())
