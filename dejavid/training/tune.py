"""Settings chosen by cross-validation inside the training split (``tune: cv``,
``DejaVidClassifier(tune='cv')``; docs/DESIGN.md section 6.8, measured in docs/results.md).

The training series are dealt into k stratified folds; every candidate of a small grid
is trained on k - 1 folds and scored on the one held out, for each fold, so each series
is held out once (its log-loss and top-1 hit).  Of the candidates whose top-1 is within
one paired standard error of the best, the one with the lowest mean log-loss wins (the
earlier, simpler one on ties; TUNE_CRITERION) and the caller then trains it on the whole
training split.  Only the training series are ever passed in,
so the evaluation split cannot take part in the choice.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import numpy as np
import torch

from ..config.settings import ALL_SERIES, TrainSettings, resampled_num_timesteps
from ..data.arrays import ArrayDataset, index_from_arrays
from ..data.standardize import statistics

# The candidates, as changes to the configured settings (the first: none).  Kept small,
# because each costs k fits: the paper's settings as configured; the diagonal step inside
# a 10 % warping band; the same with every sampled training series as a prototype of its
# own (a learned, leave-one-out trained nearest-neighbour form of DejaVid), which reaches
# a near-zero training loss within 20-30 epochs (docs/results.md), so it trains for at
# most 30 (fewer when fewer are configured); the same again with every series resampled
# to K steps before it is aligned (resample_inputs), for long series whose detail a
# K-step prototype cannot match step for step (docs/results.md: ACSF1, 1460 steps).
TUNE_GRID: tuple[dict, ...] = (
    {},
    {"step_pattern": "hvd", "band": 0.1},
    {"step_pattern": "hvd", "band": 0.1, "centroids_per_class": ALL_SERIES,
     "epochs_at_most": 30},
    {"step_pattern": "hvd", "band": 0.1, "centroids_per_class": ALL_SERIES,
     "epochs_at_most": 30, "resample_inputs": True},
)
TUNE_FOLDS = 3
# What picks the winner (TuneResult.chosen_by): among the candidates whose held-out top-1
# is within one (paired) standard error of the best, the lowest mean held-out log-loss.
# Top-1 alone is noisy on small folds; the log-loss alone favours the less confident
# candidates (the every-series ones) over more accurate ones.  Also recorded: the Brier
# score and the log-loss at the best scale of the logits, the criteria it was measured
# against (docs/DESIGN.md section 6.8, bench/bench_tune_criterion.py).
TUNE_CRITERION = "log_loss_within_se"
CRITERION_NAMES = {"log_loss_within_se": "lowest mean held-out log-loss among the candidates "
                                         "whose held-out top-1 is within one standard error "
                                         "of the best",
                   "scaled_log_loss": "lowest mean held-out log-loss at the best scale of the "
                                      "logits",
                   "log_loss": "lowest mean held-out log-loss", "top1": "highest mean top-1",
                   "brier": "lowest mean held-out Brier score",
                   "simplest_within_se": "the first candidate of the grid (the least changed) "
                                         "whose held-out top-1 is within one standard error "
                                         "of the best"}
# The record of a script's choice in its run folder: every candidate's fold scores.
TUNE_FILE = "tune.json"
# Bounds that keep the choice affordable on large data sets: it runs on a stratified,
# seeded subset of at most TUNE_MAX_VIDEOS training videos, and a candidate with
# 'centroids_per_class: all' is left out when the final model would have more than
# TUNE_MAX_PROTOTYPES prototypes (its epoch aligns every video with each of them).
TUNE_MAX_VIDEOS = 2000
TUNE_MAX_PROTOTYPES = 1000
# The keys a candidate may change, and the config key each one is written as.
CANDIDATE_KEYS = ("step_pattern", "band", "centroids_per_class", "epochs_at_most",
                  "resample_inputs", "open_ends", "centroid_init")


def describe(candidate: dict) -> str:
    """'as configured', or the candidate's changes as key=value."""
    return " ".join(f"{k}={v}" for k, v in candidate.items()) or "as configured"


def candidate_settings(settings: TrainSettings, candidate: dict,
                       train_lengths=None) -> TrainSettings:
    """``settings`` with the changes of one grid ``candidate`` applied.  A candidate that
    turns ``resample_inputs`` on also sets K to :func:`resampled_num_timesteps` of the
    configured K and ``train_lengths`` (the lengths of the series it is trained on), so
    that it aligns about as many cells per pair as the configured model (a K still 'auto'
    is left to :func:`auto_num_timesteps`, which applies the same rule)."""
    unknown = sorted(set(candidate) - set(CANDIDATE_KEYS))
    if unknown:
        raise ValueError(f"a tuning candidate may set {', '.join(CANDIDATE_KEYS)}; "
                         f"got {', '.join(unknown)}")
    cen, model, loop = settings.centroids, settings.model, settings.loop
    if "step_pattern" in candidate:
        cen = replace(cen, step_pattern=candidate["step_pattern"])
        model = replace(model, step_pattern=candidate["step_pattern"])
    if "band" in candidate:   # (a band and open ends exclude each other)
        cen = replace(cen, band=candidate["band"], open_ends=False)
        model = replace(model, band=candidate["band"], open_ends=False)
    if "open_ends" in candidate:
        ends = bool(candidate["open_ends"])
        cen = replace(cen, open_ends=ends, band=None if ends else cen.band)
        model = replace(model, open_ends=ends, band=None if ends else model.band)
    if "centroid_init" in candidate:
        cen = replace(cen, init=candidate["centroid_init"])
    if "centroids_per_class" in candidate:
        cen = replace(cen, centroids_per_class=candidate["centroids_per_class"])
    if "resample_inputs" in candidate:
        model = replace(model, resample_inputs=candidate["resample_inputs"])
        if candidate["resample_inputs"] and not settings.model.resample_inputs \
                and cen.num_timesteps != "auto":
            if train_lengths is None:
                raise ValueError("a candidate that resamples the series needs the training "
                                 "series' lengths (its K follows from them)")
            cen = replace(cen, num_timesteps=resampled_num_timesteps(cen.num_timesteps,
                                                                     train_lengths))
    if "epochs_at_most" in candidate:
        if loop.num_epochs == "auto":
            raise ValueError("resolve num_epochs before applying a candidate that caps it")
        loop = replace(loop, num_epochs=min(int(loop.num_epochs), candidate["epochs_at_most"]))
    return replace(settings, centroids=cen, model=model, loop=loop)


def config_changes(candidate: dict, settings: TrainSettings) -> dict:
    """The config keys (``configs/*.yaml``) that a candidate's changes are written as, with
    their values in ``settings`` (resolved, as :func:`candidate_settings` made them)."""
    out = {}
    if "step_pattern" in candidate:
        out["use_mm"] = 1 if candidate["step_pattern"] == "hvd" else 0
    if "band" in candidate:
        out["band"] = candidate["band"]
        out["open_ends"] = False
    if "open_ends" in candidate:
        out["open_ends"] = bool(candidate["open_ends"])
        if candidate["open_ends"]:
            out["band"] = "none"
    if "centroid_init" in candidate:
        out["centroid_init"] = candidate["centroid_init"]
    if "centroids_per_class" in candidate:
        out["centroids_per_class"] = candidate["centroids_per_class"]
    if "resample_inputs" in candidate:
        out["resample_inputs"] = candidate["resample_inputs"]
        out["num_timesteps"] = settings.centroids.num_timesteps
    if "epochs_at_most" in candidate:
        out["num_epochs"] = int(settings.loop.num_epochs)
    return out


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """k disjoint, sorted position arrays that cover ``labels``: each class's members,
    shuffled with ``seed``, are dealt to the folds in turn (one class after the other, the
    turn carried over), so every fold gets each class's share to within one."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    turn = 0
    for c in np.unique(labels):
        for n in rng.permutation(np.flatnonzero(labels == c)):
            folds[turn % k].append(int(n))
            turn += 1
    return [np.array(sorted(f), dtype=np.int64) for f in folds]


def choice_subset(labels: np.ndarray, seed: int, limit: int = TUNE_MAX_VIDEOS) -> np.ndarray:
    """Sorted positions of the videos the choice runs on: all of them up to ``limit``,
    else each class's share of ``limit`` (at least 2 videos, or all it has), drawn with
    ``seed``."""
    labels = np.asarray(labels)
    if len(labels) <= limit:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    frac = limit / len(labels)
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = min(len(members), max(2, int(round(len(members) * frac))))
        keep.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(keep))


def prototype_count(labels: np.ndarray, sample_size_per_class: int) -> int:
    """Prototypes of ``centroids_per_class: all`` on these training labels."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return int(np.minimum(counts, sample_size_per_class).sum())


def affordable(grid: tuple, labels: np.ndarray, settings: TrainSettings,
               limit: int = TUNE_MAX_PROTOTYPES) -> tuple[tuple, list[str]]:
    """(the candidates of ``grid`` to score, a reason per candidate left out): a
    ``centroids_per_class: all`` candidate is left out above ``limit`` prototypes, and a
    ``resample_inputs`` one under ``centroid_init: raw`` (which keeps each series' own
    time scale, the opposite choice)."""
    P = prototype_count(labels, settings.centroids.sample_size_per_class)
    keep, skipped = [], []
    for cand in grid:
        if cand.get("centroids_per_class") == ALL_SERIES and P > limit:
            skipped.append(f"{describe(cand)}: {P} prototypes > {limit}")
        elif cand.get("resample_inputs") and settings.centroids.init == "raw":
            skipped.append(f"{describe(cand)}: not with centroid_init: raw")
        else:
            keep.append(cand)
    return tuple(keep), skipped


def for_lengths(grid: tuple, lengths) -> tuple:
    """The candidates of ``grid`` as they apply to training series of these ``lengths``:
    unchanged when all have the same length; otherwise each candidate with a warping band
    has open ends instead (``open_ends``: each series matched to any stretch of a
    centroid) and centroids averaged from the series at their own time scale
    (``centroid_init: raw``), the scale at which open ends match them, unless it
    resamples the series (which gives every series the same length: it only drops the
    band).  A band keeps each step near the same relative position of the centroid,
    which holds for series recorded on one time base, and not when a series is a part of
    the event, or the event repeated; open ends are made for those (docs/DESIGN.md
    sections 3.3.2 and 6.8 have the measurements)."""
    if len(set(int(t) for t in lengths)) <= 1:
        return tuple(grid)
    out = []
    for cand in grid:
        if "band" in cand:
            cand = {k: v for k, v in cand.items() if k != "band"}
            if not cand.get("resample_inputs"):
                cand.update(open_ends=True, centroid_init="raw")
            if cand in out:
                continue   # it is an earlier candidate
        out.append(cand)
    return tuple(out)


def fold_count(labels: np.ndarray, k: int) -> int:
    """The folds used: ``k``, or fewer when the smallest class has fewer series (every fold's
    training part must hold each class).  ValueError when a class has a single series."""
    labels = np.asarray(labels)
    values, counts = np.unique(labels, return_counts=True)
    if counts.min() < 2:
        lone = values[counts < 2].tolist()
        raise ValueError(f"tune: cv needs at least 2 training series per class (each fold "
                         f"trains on the others); class(es) {lone} have 1")
    if k < 2:
        raise ValueError(f"tune_folds must be >= 2, got {k}")
    return int(min(k, counts.min()))


@dataclass
class TuneResult:
    """What :func:`choose_by_cv` found: the winning candidate and every fold's score."""
    grid: tuple
    folds: int
    scores: list            # [candidate][fold] top-1 on the held-out fold
    chosen_index: int
    seconds: float
    fold_sizes: list = field(default_factory=list)
    videos: int = 0         # training videos the choice ran on (TUNE_MAX_VIDEOS at most)
    losses: list = field(default_factory=list)   # [candidate][fold] held-out mean log-loss
    skipped: list = field(default_factory=list)   # candidates left out, with the reason
    # [candidate][fold] held-out log-loss at the best scale of the logits (scaled_log_loss)
    scaled_losses: list = field(default_factory=list)
    briers: list = field(default_factory=list)   # [candidate][fold] held-out Brier score
    # [candidate][series] each training series' log-loss and hit (1.0: top-1 right) when
    # it was held out, in fold order (the paired comparisons of the criterion)
    sample_losses: list = field(default_factory=list)
    sample_hits: list = field(default_factory=list)

    def admissible(self) -> list[int]:
        """The candidates whose held-out top-1 is within one standard error of the best:
        per training series, the best candidate's hit minus this one's (both held out
        in the same fold), whose mean must not exceed its standard error."""
        hits = np.asarray(self.sample_hits, dtype=np.float64)            # [G, N]
        best = int(np.argmax(hits.mean(1)))
        out = []
        for g in range(len(hits)):
            d = hits[best] - hits[g]
            se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0
            if d.mean() <= se + 1e-12:
                out.append(g)
        return out

    def chosen_by(self, criterion: str) -> int:
        """The candidate a criterion picks: 'log_loss_within_se' (the criterion in use):
        the lowest mean held-out log-loss among :meth:`admissible` candidates; the lowest
        mean of 'scaled_log_loss', 'log_loss' or 'brier'; the highest mean 'top1'.  The
        first of the best (the simpler) on ties."""
        if criterion == "top1":
            return int(np.argmax([float(np.mean(v)) for v in self.scores]))
        if criterion == "log_loss_within_se":
            ok = self.admissible()
            return min(ok, key=lambda g: (float(np.mean(self.sample_losses[g])), g))
        if criterion == "simplest_within_se":
            return min(self.admissible())
        table = {"scaled_log_loss": self.scaled_losses, "log_loss": self.losses,
                 "brier": self.briers}
        if criterion not in table:
            raise ValueError(f"criterion must be one of {', '.join(CRITERION_NAMES)}, "
                             f"got {criterion!r}")
        return int(np.argmin([float(np.mean(v)) for v in table[criterion]]))

    @property
    def chosen(self) -> dict:
        return dict(self.grid[self.chosen_index])

    @property
    def means(self) -> list[float]:
        """Mean held-out top-1 per candidate."""
        return [float(np.mean(s)) for s in self.scores]

    @property
    def mean_losses(self) -> list[float]:
        """Mean held-out log-loss per candidate (the 'log_loss' criterion's score)."""
        return [float(np.mean(v)) for v in self.losses]

    def as_dict(self) -> dict:
        """JSON-ready record (saved as ``tune.json`` in the run folder)."""
        return {"chosen": describe(self.chosen), "chosen_changes": self.chosen,
                "folds": self.folds, "fold_sizes": self.fold_sizes, "videos": self.videos,
                "skipped": list(self.skipped),
                "seconds": round(self.seconds, 3),
                "criterion": CRITERION_NAMES[TUNE_CRITERION],
                "within_one_se_of_the_best_top1": [describe(self.grid[g])
                                                   for g in self.admissible()],
                "candidates": [{"changes": describe(c),
                                "fold_scaled_log_loss": [round(float(v), 6) for v in sc],
                                "mean_scaled_log_loss": round(float(np.mean(sc)), 6),
                                "fold_brier": [round(float(v), 6) for v in br],
                                "mean_brier": round(float(np.mean(br)), 6),
                                "fold_log_loss": [round(float(v), 6) for v in lo],
                                "mean_log_loss": round(float(np.mean(lo)), 6),
                                "fold_top1": [round(float(v), 6) for v in s],
                                "mean_top1": round(float(np.mean(s)), 6)}
                               for c, s, lo, sc, br in zip(self.grid, self.scores,
                                                           self.losses, self.scaled_losses,
                                                           self.briers)]}

    def summary(self) -> str:
        """One line per candidate with its fold scores, the chosen one marked."""
        lines = [f"tune: cv over {self.folds} folds of {self.videos} training videos "
                 f"({self.seconds:.1f} s):"]
        lines += [f"  left out: {why}" for why in self.skipped]
        ok = self.admissible()
        for g, (c, s, lo, sc) in enumerate(zip(self.grid, self.scores, self.losses,
                                               self.scaled_losses)):
            mark = "  <- chosen" if g == self.chosen_index else \
                ("" if g in ok else "  (top-1 more than one standard error below the best)")
            lines.append(f"  {describe(c)}: mean log-loss at the best scale {np.mean(sc):.4f}, "
                         f"as trained {np.mean(lo):.4f}, mean top-1 "
                         f"{np.mean(s):.4f} (folds " + ", ".join(f"{v:.4f}" for v in s)
                         + f"){mark}")
        return "\n".join(lines)


def cannot_tune(labels, folds: int) -> Optional[str]:
    """Why ``tune: cv`` cannot run on training labels ``labels`` (None: it can).  The
    callers then train as configured and say so, rather than fail a run that would
    train without the choice."""
    try:
        fold_count(np.asarray(labels), folds)
    except ValueError as exc:
        return str(exc)
    return None


def fold_datasets(tensors: list, labels: np.ndarray, label_values: list, held: np.ndarray,
                  standardize: bool) -> tuple[ArrayDataset, ArrayDataset]:
    """(train part, held-out part) of one fold over the raw series ``tensors`` with class
    codes ``labels``; with ``standardize`` both use the statistics of the train part only."""
    is_held = np.zeros(len(tensors), dtype=bool)
    is_held[held] = True
    index, tensors = index_from_arrays(tensors, [label_values[c] for c in labels],
                                       label_values=label_values,
                                       split=["held" if h else "fit" for h in is_held])
    if standardize:
        index.feature_stats = statistics(t for t, h in zip(tensors, is_held) if not h)
    return ArrayDataset(index, tensors, "fit"), ArrayDataset(index, tensors, "held")


def choose_by_cv(tensors: list, labels, label_values: list, settings: TrainSettings,
                 standardize: bool, *, folds: int = TUNE_FOLDS, grid: tuple = TUNE_GRID,
                 seed: Optional[int] = None, device="cpu", progress: bool = False,
                 log: Callable[[str], None] = print) -> TuneResult:
    """Pick a candidate of ``grid`` by ``TUNE_CRITERION`` (:meth:`TuneResult.chosen_by`) over
    stratified folds of the training series; every criterion's scores are recorded.
    ``grid`` applies as :func:`for_lengths` makes it for the series' lengths (no band
    when they differ).

    ``tensors``: the training split's raw (not standardised) series [T, F]; ``labels``:
    their class codes (0 .. C - 1, positions in ``label_values``); ``settings``: as
    configured ('auto' values are resolved per fold, from that fold's training part).
    Folds come from ``seed`` (default: ``settings.loop.seed``).  Costs
    ``folds * len(grid)`` fits on (folds - 1) / folds of the series, plus one evaluation
    each; nothing is written.  Nothing here sees any series but these.
    """
    from .engine import evaluate
    from .run import fit

    labels = np.asarray(labels, dtype=np.int64)
    if len(tensors) != len(labels):
        raise ValueError(f"{len(tensors)} series but {len(labels)} labels")
    seed = settings.loop.seed if seed is None else seed
    grid = for_lengths(grid, [t.shape[0] for t in tensors])
    grid, skipped = affordable(grid, labels, settings, TUNE_MAX_PROTOTYPES)
    subset = choice_subset(labels, seed, TUNE_MAX_VIDEOS)
    if len(subset) < len(labels):
        log(f"tune: choosing on {len(subset)} of the {len(labels)} training videos "
            f"(a stratified subset, TUNE_MAX_VIDEOS)")
        tensors, labels = [tensors[n] for n in subset], labels[subset]
    k = fold_count(labels, folds)
    t0 = time.time()
    parts = stratified_folds(labels, k, seed)
    scores: list[list[float]] = [[] for _ in grid]
    losses: list[list[float]] = [[] for _ in grid]
    scaled: list[list[float]] = [[] for _ in grid]
    briers: list[list[float]] = [[] for _ in grid]
    sample_losses: list[list[float]] = [[] for _ in grid]   # per held-out series, fold order
    sample_hits: list[list[float]] = [[] for _ in grid]
    quiet = lambda *a, **kw: None  # noqa: E731
    for f, held in enumerate(parts):
        train_part, held_part = fold_datasets(tensors, labels, label_values, held, standardize)
        lengths = train_part.index.lengths[train_part.rows]
        for g, cand in enumerate(grid):
            run = fit(train_part, None, candidate_settings(settings, cand, lengths), device=device,
                      progress=False, log=quiet)
            res = evaluate(run.model, held_part, settings.loop, run.model.mu.device,
                           progress=False, keep_logits=True)
            scores[g].append(float(res["top1"]))
            losses[g].append(float(res["loss"]))
            scaled[g].append(scaled_log_loss(res["logits"], res["labels"]))
            briers[g].append(brier_score(res["logits"], res["labels"]))
            z, y = res["logits"].double(), res["labels"].long()
            sample_losses[g] += torch.nn.functional.cross_entropy(z, y, reduction="none").tolist()
            sample_hits[g] += (z.argmax(1) == y).double().tolist()
            log(f"tune: fold {f + 1}/{k}, {describe(cand)}: held-out top-1 {res['top1']:.4f}")
    # TUNE_CRITERION picks (the first of the best: the simpler on ties); every criterion's
    # scores stay in the result.
    result = TuneResult(grid=tuple(grid), folds=k, scores=scores, chosen_index=0,
                        seconds=time.time() - t0, fold_sizes=[int(len(p)) for p in parts],
                        videos=len(labels), skipped=skipped, losses=losses,
                        scaled_losses=scaled, briers=briers, sample_losses=sample_losses,
                        sample_hits=sample_hits)
    result.chosen_index = result.chosen_by(TUNE_CRITERION)
    return result


def brier_score(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over samples of sum_c (softmax(logits)_c - [c = label])^2 (between 0 and 2): a
    proper score like the log-loss, but bounded, so one confident mistake weighs at most 2."""
    p = torch.softmax(logits.detach().to(torch.float64), 1)
    onehot = torch.nn.functional.one_hot(labels.detach().long(), p.shape[1]).to(p.dtype)
    return float((p - onehot).pow(2).sum(1).mean())


def scaled_log_loss(logits: torch.Tensor, labels: torch.Tensor, span: float = 10.0,
                    steps: int = 80) -> float:
    """min over s > 0 of the mean cross-entropy of s * ``logits`` [N, C] (``labels`` [N]):
    the held-out log-loss once the logits' one scale is set at its best, which scores how
    well the classes are ranked and separated and not how confident the model was.  The
    loss is convex in s, hence unimodal in log s; a golden-section search over
    log s in [-span, span] finds it (``steps`` iterations: to ~1e-15 of the interval)."""
    z = logits.detach().to(torch.float64)
    y = labels.detach().long()

    def loss(u: float) -> float:
        return float(torch.nn.functional.cross_entropy(z * np.exp(u), y))

    a, b = -span, span
    r = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - r * (b - a), a + r * (b - a)
    fc, fd = loss(c), loss(d)
    for _ in range(steps):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - r * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + r * (b - a)
            fd = loss(d)
    return min(fc, fd, loss(0.0))


def choose_on_dataset(train_ds, settings: TrainSettings, standardize: bool, folds: int,
                      device="cpu", progress: bool = False,
                      log: Callable[[str], None] = print) -> TuneResult:
    """:func:`choose_by_cv` on every video of ``train_ds`` (a dataset of one split with
    ``index``, ``rows`` and ``item(n, standardized=False)``: TSEDataset, ArrayDataset),
    read as stored; logs each fold's scores when ``progress`` and the summary."""
    index = train_ds.index
    tensors = [train_ds.item(n, standardized=False)[0] for n in range(len(train_ds))]
    result = choose_by_cv(tensors, index.labels[train_ds.rows], index.label_values, settings,
                          standardize, folds=folds, device=device, progress=progress,
                          log=log if progress else (lambda *a: None))
    log(result.summary())
    return result


def choose_for_config(cfg: dict, settings: TrainSettings, train_ds, device="cpu",
                      progress: bool = False, log: Callable[[str], None] = print):
    """``tune: cv`` for a script's config: (cfg, settings, TuneResult or None).

    ``train_ds`` (the config's training split) is the only input.  The chosen candidate's
    changes are written into the returned config (so checkpoints record what was
    trained) and settings.  When the labels do not allow the choice (:func:`cannot_tune`)
    it says why and returns the inputs and None: training then runs as configured."""
    why = cannot_tune(train_ds.index.labels[train_ds.rows], cfg["tune_folds"])
    if why:
        log(f"warning: tune: cv skipped ({why}); training as configured")
        return cfg, settings, None
    log(f"tune: cv: {cfg['tune_folds']} folds of the {len(train_ds)} training videos")
    result = choose_on_dataset(train_ds, settings, cfg["standardize"], cfg["tune_folds"],
                               device, progress, log)
    tuned = candidate_settings(settings, result.chosen,
                               train_ds.index.lengths[train_ds.rows])
    return {**cfg, **config_changes(result.chosen, tuned)}, tuned, result
