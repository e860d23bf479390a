"""PNG figures of a reproduce run: learning curves, learned weights, one alignment path.

matplotlib is an optional extra (``pip install matplotlib`` or ``pip install -e '.[plots]'``);
it is imported only when a figure is drawn.  Figures are built with the
object-oriented API (no pyplot state, no GUI backend) and written atomically.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..alignment.op import align
from ..alignment.ref import local_cost_ref
from ..errors import MissingDependency
from ..model.layer import resample_packed
from ..io import atomic_path

MAX_CLASS_PANELS = 16


def _figure(**kw):
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependency("plots need matplotlib: pip install matplotlib "
                                "(or pip install -e '.[plots]'); or pass --no-plots") from exc
    return Figure(**kw)


def _save(fig, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(path)


# Horizontal reference lines: each its own colour and dash pattern, none of them the
# colours of the runs' curves (C0, C1, ...), so two references never look alike.
REFERENCE_STYLES = (("tab:green", ":"), ("tab:purple", "-."), ("tab:gray", (0, (5, 2))),
                    ("tab:olive", (0, (1, 1))), ("tab:cyan", (0, (3, 1, 1, 1))),
                    ("tab:brown", (0, (8, 2, 1, 2))))


def learning_curves(histories: dict[str, Sequence[dict]], path: str | Path,
                    reference: Optional[dict[str, float]] = None, title: str = "") -> Path:
    """Loss and accuracy per epoch of one or more runs (``histories``: label -> metrics rows).

    ``reference``: label -> top-1 of methods without epochs, drawn as horizontal lines.
    """
    fig = _figure(figsize=(11, 4.2), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for n, (label, rows) in enumerate(histories.items()):
        color = f"C{n}"
        ep = [r["epoch"] for r in rows]
        ax_loss.plot(ep, [r["train_loss"] for r in rows], color=color, ls="--",
                     label=f"{label}: train")
        ax_loss.plot(ep, [r["val_loss"] for r in rows], color=color, label=f"{label}: val")
        ax_acc.plot(ep, [100 * r["train_top1"] for r in rows], color=color, ls="--",
                    label=f"{label}: train top-1")
        ax_acc.plot(ep, [100 * r["val_top1"] for r in rows], color=color, marker=".",
                    label=f"{label}: val top-1")
    for n, (label, top1) in enumerate((reference or {}).items()):
        color, ls = REFERENCE_STYLES[n % len(REFERENCE_STYLES)]
        ax_acc.axhline(100 * top1, color=color, ls=ls, lw=1.4,
                       label=f"{label}: {100 * top1:.1f}")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    low = min([100 * r["val_top1"] for rows in histories.values() for r in rows]
              + [100 * v for v in (reference or {}).values()] + [100.0])
    ax_acc.set_ylim(max(0.0, low - 5), 100.5)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _integer_ticks(ax) -> None:
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))


def _colour_limit(values: np.ndarray) -> float:
    """Symmetric colour limit: max |values|, or for large arrays the 99.5th percentile, so
    that a few outliers among many weights do not wash out the rest (the colour bar then
    shows the clipping with arrows)."""
    a = np.abs(values)
    return float(a.max() if a.size <= 10_000 else np.quantile(a, 0.995)) or 1.0


def _extend(values: np.ndarray, vmax: float) -> str:
    return "both" if float(np.abs(values).max()) > vmax else "neither"


def _weight_image(ax, img: np.ndarray, vmax: float, xlabel: bool = True, ylabel: bool = True):
    im = ax.imshow(img, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                   interpolation="nearest", origin="lower")
    _integer_ticks(ax)
    if xlabel:
        ax.set_xlabel("feature")
    if ylabel:
        ax.set_ylabel("centroid step")
    return im


def weight_heatmaps(theta: torch.Tensor, label_values: Sequence, grid_path: str | Path,
                    mean_path: str | Path, title: str = "",
                    max_classes: int = MAX_CLASS_PANELS) -> tuple[Path, Path]:
    """Learned log-weights theta [C, K, F] as centroid-step x feature images.

    ``grid_path``: one panel per class (the first ``max_classes``) on one colour
    scale; ``mean_path``: the mean over all classes.  Colour is ln w: 0 is
    unit weight, red up-weights a feature at that step, blue down-weights it.
    """
    th = theta.detach().float().cpu().numpy()  # [C, K, F]
    C = th.shape[0]
    shown = min(C, max_classes)
    vmax = _colour_limit(th[:shown])
    cols = math.ceil(math.sqrt(shown))
    rows = math.ceil(shown / cols)
    fig = _figure(figsize=(3.2 * cols + 1.0, 2.6 * rows + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    im = None
    for c, ax in enumerate(axes):
        if c >= shown:
            ax.set_axis_off()
            continue
        im = _weight_image(ax, th[c], vmax, xlabel=c + cols >= shown, ylabel=c % cols == 0)
        ax.set_title(f"class {label_values[c]}", fontsize=9)
    fig.colorbar(im, ax=axes.tolist(), label="ln w  (0 = unit weight)", shrink=0.8,
                 extend=_extend(th[:shown], vmax))
    fig.suptitle((title + ": " if title else "") + "learned log-weights per class"
                 + (f" (first {shown} of {C})" if shown < C else ""))
    grid = _save(fig, grid_path)

    mean = th.mean(0)  # [K, F]
    fig = _figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    vm = _colour_limit(mean)
    im = _weight_image(ax, mean, vm)
    fig.colorbar(im, ax=ax, label="mean over classes of ln w", extend=_extend(mean, vm))
    ax.set_title((title + ": " if title else "") + f"log-weights averaged over {C} classes")
    return grid, _save(fig, mean_path)


def path_cells(path: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Path [K, 2] (lo, hi per centroid step) -> (i, j) of every matched cell, in order."""
    ii, jj = [], []
    for i, (lo, hi) in enumerate(path.tolist()):
        for j in range(lo, hi + 1):
            ii.append(i)
            jj.append(j)
    return np.array(ii), np.array(jj)


def _alignment(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, step_pattern: str,
               band: Optional[float] = None, open_ends: bool = False):
    """(offsets, distances [P], paths [P, K, 2]) of one video x [T, F] to every centroid
    series, inside the warping ``band`` (None: none); with ``open_ends`` the paths are
    those of the video with its two end steps (columns 0 and T + 1)."""
    offsets = torch.tensor([0, x.shape[0]], dtype=torch.int64)
    with torch.no_grad():
        dist, paths = align(x, offsets, mu, theta, step_pattern, backend="ref", band=band,
                            open_ends=open_ends)
    return offsets, dist[0], paths[0]


def class_mean(theta: torch.Tensor, proto_class: Optional[torch.Tensor],
               num_classes: int) -> torch.Tensor:
    """[C, K, F] from per-prototype ``theta`` [P, K, F]: each class's mean over its
    prototypes (``proto_class`` [P]; None: one per class, returned as it is)."""
    if proto_class is None:
        return theta
    proto_class = torch.as_tensor(proto_class).long().cpu()
    return torch.stack([theta[proto_class == c].mean(0) for c in range(num_classes)])


def alignment_path(x: torch.Tensor, label: int, models: dict[str, tuple],
                   step_pattern: str, path: str | Path, label_values: Sequence,
                   title: str = "", band: Optional[float] = None,
                   resample_inputs: bool = False, open_ends: bool = False) -> Path:
    """One video against its class centroid: local-cost matrix with the optimal path drawn.

    ``models``: panel title -> (mu [P, K, F], theta [P, K, F]) with one centroid series
    per class (P = C), or (mu, theta, proto_class [P]) with several per class: the panel
    then shows the class's prototype nearest to the video, and the prediction is the
    class of the nearest prototype.  One panel each (e.g. the DBA initialisation with
    unit weights and the trained model).  The video is aligned as the model aligns it:
    inside ``band``, resampled to K steps first with ``resample_inputs``, and with
    ``open_ends`` matched to a stretch of the centroid (the path's cells on the video's
    steps are drawn).
    """
    fig = _figure(figsize=(5.6 * len(models), 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(models)))
    for ax, (name, model) in zip(axes, models.items()):
        mu, theta = model[0].float().cpu(), model[1].float().cpu()
        proto_class = torch.arange(mu.shape[0]) if len(model) < 3 or model[2] is None \
            else torch.as_tensor(model[2]).long().cpu()
        xs = x.float()
        if resample_inputs:   # as the layer resamples it
            xs, _ = resample_packed(xs, torch.tensor([0, xs.shape[0]]), mu.shape[1])
        offsets, dist, paths = _alignment(xs, mu, theta, step_pattern, band, open_ends)
        own = (proto_class == label).nonzero().flatten()
        p = int(own[dist[own].argmin()])                     # the class's nearest series
        D = local_cost_ref(xs, offsets, mu[p:p + 1], theta[p:p + 1])[0, 0]  # [K, T]
        ii, jj = path_cells(paths[p])
        if open_ends:   # columns 1 .. T of the padded video are its steps 0 .. T - 1
            keep = (jj >= 1) & (jj <= xs.shape[0])
            ii, jj = ii[keep], jj[keep] - 1
        im = ax.imshow(D.numpy(), aspect="auto", origin="lower", cmap="viridis",
                       interpolation="nearest")
        dots = len(ii) <= 60  # a long path reads better as a plain line
        ax.plot(jj, ii, color="white", lw=1.6, marker="o" if dots else None, ms=3, mfc="red",
                mec="red")
        _integer_ticks(ax)
        pred = int(proto_class[int(dist.argmin())])
        ax.set_title(f"{name}\ndistance {float(dist[p]):.3g}; predicted class "
                     f"{label_values[pred]} ({'right' if pred == label else 'wrong'})",
                     fontsize=9)
        ax.set_xlabel("video step j" + (" (resampled to K steps)" if resample_inputs else ""))
        ax.set_ylabel(f"centroid step i (class {label_values[label]})")
        fig.colorbar(im, ax=ax, label="local cost D[i, j]")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
