"""DejaVid as a scikit-learn-style classifier over variable-length series.

    clf = DejaVidClassifier().fit(X_train, y_train)   # configs/default.yaml's values
    clf.predict(X_test)              # X: list of [T, F] arrays/tensors (any T), or [N, T, F];
                                     # aeon/sktime's (n_cases, n_channels, n_timepoints)
                                     # with layout='nct'; a 2-D X is N univariate series
    clf.predict_proba(X_test)        # [N, C], rows sum to 1
    clf.decision_function(X_test)    # [N, C] negative DejaVid distances

Training runs the same code as ``train_dejavid.py`` (:func:`dejavid.fit`: DBA centroid
initialisation, the epoch loop, the alignment backends) on an in-memory dataset: no
files unless ``cache_dir`` (centroid cache) or ``run_dir`` (checkpoints, metrics) is
given.  It works with ``sklearn.base.clone``, ``cross_val_score``, ``GridSearchCV`` and
``Pipeline``.  scikit-learn is optional: with it installed the class derives from its
``BaseEstimator``/``ClassifierMixin``; without it the same ``get_params``/``set_params``/
``score`` come from the small fallbacks below.  torch is imported on first ``fit``, so
``from dejavid import DejaVidClassifier`` stays quick.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Optional

import numpy as np

from ..config import defaults as D
from . import params as P
from .layout import series_of
from .threads import quiet_cpu

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
except ImportError:  # scikit-learn is an optional dependency
    class BaseEstimator:
        """get_params/set_params as scikit-learn defines them (every constructor argument
        is stored unchanged under its own name), so ``clone`` works the same way."""

        @classmethod
        def _get_param_names(cls):
            sig = inspect.signature(cls.__init__)
            return sorted(p.name for p in sig.parameters.values()
                          if p.name != "self" and p.kind != p.VAR_KEYWORD)

        def get_params(self, deep: bool = True) -> dict:
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(f"invalid parameter {key!r} for {type(self).__name__}; "
                                     f"valid: {', '.join(valid)}")
                setattr(self, key, value)
            return self

        def __repr__(self):
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
            return f"{type(self).__name__}({args})"

    class ClassifierMixin:
        """Accuracy as the score, as scikit-learn's mixin."""
        _estimator_type = "classifier"

        def score(self, X, y, sample_weight=None) -> float:
            pred = self.predict(X)
            hits = (np.asarray(pred) == np.asarray(y)).astype(float)
            return float(np.average(hits, weights=sample_weight))


class DataConversionWarning(UserWarning):
    """Input converted to the expected shape (scikit-learn's warning when it is installed)."""


class NotFittedError(ValueError, AttributeError):
    """predict/score called before fit (scikit-learn's exception when it is installed)."""


try:
    from sklearn.exceptions import DataConversionWarning, NotFittedError  # noqa: F811
except ImportError:
    pass


def check_labels(X_len: int, y) -> np.ndarray:
    """y as a 1-D array of X_len class labels with at least two distinct values, else
    ValueError (a column vector [N, 1] is flattened with a warning, as scikit-learn does)."""
    if y is None:
        raise ValueError("this classifier requires y to be passed, but the target y is None")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected; it was "
                      "flattened to [N] (pass y.ravel())",
                      DataConversionWarning, stacklevel=3)
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D (one label per series), got shape {y.shape}")
    if len(y) != X_len:
        raise ValueError(f"X holds {X_len} series but y holds {len(y)} labels")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
        raise ValueError("Unknown label type: continuous. y holds continuous values (a "
                         "regression target); a classifier needs class labels")
    if len(np.unique(y)) < 2:
        raise ValueError(f"y holds 1 class ({y[0]!r}); a classifier needs at least two")
    return y


def fit_inputs(X, y, layout=None):
    """(in-memory training dataset, classes) for an estimator's fit; ``layout`` as in
    :mod:`dejavid.estimators.layout`."""
    from ..data.arrays import ArrayDataset, as_sequences, index_from_arrays
    tensors = as_sequences(series_of(X, layout))
    y = check_labels(len(tensors), y)
    classes = np.unique(y)
    index, tensors = index_from_arrays(tensors, y.tolist(), label_values=classes.tolist())
    return ArrayDataset(index, tensors, "train"), classes


class DistanceClassifier(ClassifierMixin, BaseEstimator):
    """Shared predict / predict_proba / decision_function of classifiers that score each
    series by a distance to every class (smaller is nearer); subclasses provide
    ``_class_distances(tensors)`` -> [N, C] and set ``classes_``, ``n_features_in_``."""

    def _distances(self, X) -> np.ndarray:
        if not hasattr(self, "classes_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit "
                                 f"first")
        from ..data.arrays import as_sequences
        tensors = as_sequences(series_of(X, getattr(self, "layout", None), warn=False))
        if tensors[0].shape[1] != self.n_features_in_:
            raise ValueError(f"X has {tensors[0].shape[1]} features per step but the "
                             f"classifier was fitted on {self.n_features_in_}")
        with quiet_cpu():
            return self._class_distances(tensors)

    def decision_function(self, X) -> np.ndarray:
        """Negative distances [N, C]: larger means nearer (columns follow ``classes_``)."""
        return -self._distances(X)

    def predict_proba(self, X) -> np.ndarray:
        """[N, C] softmax of the per-series standardised negative distances (the logits
        DejaVid is trained with)."""
        import torch

        from ..model.layer import standardized_logits
        dist = torch.from_numpy(np.asarray(self._distances(X), dtype=np.float64))
        return torch.softmax(standardized_logits(dist, getattr(self, "std_eps", 1e-6)),
                             dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        """The nearest class of each series (ties to the class listed first in ``classes_``)."""
        nearest = np.argmin(self._distances(X), axis=1)
        return self.classes_[nearest]


# The parameters a resumed fit may change: where and how it computes, what it prints.
RESUME_FREE = frozenset({"resume", "verbose", "device", "backend", "cache_dir", "run_dir"})


class DejaVidClassifier(DistanceClassifier):
    """DejaVid classifier: per-class learned centroid series with per-step, per-feature
    weights, compared to each input series by an alignment distance (docs/DESIGN.md sections 3-6).

    Hyper-parameters are the config keys of the same names, with the same defaults as
    ``configs/default.yaml`` and :class:`dejavid.config.settings.TrainSettings` (one source:
    :mod:`dejavid.config.defaults`):

    num_timesteps        K, length of each class's centroid series ('auto': the median
                         training length, clipped to [8, 128]; with resample_inputs and a
                         median above 128, round(sqrt(128 * median)))
    num_epochs ('auto': enough for 400 updates, clipped to [30, 200]), batch_size, lr,
    ms_lr_div, weight_decay, warmup_epochs, min_lr_ratio
                         AdamW on theta at ``lr`` and mu at ``lr / ms_lr_div``, cosine schedule
    use_fixed_path       align along paths of a per-epoch parameter snapshot
    step_pattern         'hv' or 'hvd' (adds the diagonal step)
    band                 None, or a warping band: alignments keep |i/(K-1) - j/(T-1)| <= band
    centroids_per_class  M prototype series per class (k-medoids, then DBA per cluster; a
                         learned soft minimum over them), or 'all' (every sampled training
                         series its own prototype, trained leave-one-out); 1 is the paper's
    centroid_init        'resample' (DBA over the series resampled to K steps) or 'raw'
    resample_inputs      resample every series to K steps before it is aligned (False, the
                         paper's: each is aligned at its own length)
    open_ends            match every series in full to a stretch of each centroid series,
                         which may begin and end at any of its steps (False, the paper's;
                         not with a band)
    tune                 'none', or 'cv': choose step pattern, band (open ends on
                         series of varying length), prototypes and resample_inputs among
                         dejavid.training.tune.TUNE_GRID by stratified ``tune_folds``-fold
                         cross-validation on X, y, then train the choice on all of X
                         (``tune_`` holds the fold scores)
    w_one_init           weights start at 1 (theta = 0) instead of theta ~ N(0, 1)
    freeze_centroids     learn the weights only
    freeze_weights       learn the centroids only
    logit_head           'temperature' (learned -d / tau, trains for every C >= 2) or
                         'zscore' (the paper's per-sample standardised logits)
    standardize          standardise every feature with the training series' mean and std
                         (applied again at prediction)
    sample_size_per_class, dba_max_iter, centroid_seed
                         DBA centroid initialisation
    std_eps              epsilon of the zscore head
    seed                 batch order and weight initialisation (also seeds the global RNGs)
    layout               how X is laid out: 'ntf' ([N, T, F] or a list of [T, F]: tslearn,
                         torch), 'nct' ((n_cases, n_channels, n_timepoints) or a list of
                         [F, T]: aeon, sktime), None ('ntf', warning when X looks
                         transposed); a 2-D X is N univariate series in every layout
    device               'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:N'
    backend              'auto', 'ref', 'numba', 'cuda'
    cache_dir            cache the centroids there (None: no file)
    run_dir              write checkpoints and metrics.jsonl there (None: no files); Ctrl-C
                         then writes a checkpoint (in the main thread)
    resume               continue the unfinished run in ``run_dir`` (same X, y, parameters)
    verbose              progress bars and the per-epoch line

    Fitted attributes: ``classes_``, ``n_features_in_``, ``model_`` (the trained
    :class:`dejavid.DejaVid` layer, set to align freely), ``history_`` (one row per epoch).
    Prediction only reads them, so one fitted classifier can predict from several threads.
    """

    RULES = {
        "num_timesteps": P.count_or_auto, "num_epochs": P.count_or_auto,
        "batch_size": P.count, "lr": P.positive, "ms_lr_div": P.positive,
        "weight_decay": P.non_negative, "warmup_epochs": P.non_negative_int,
        "min_lr_ratio": P.fraction, "use_fixed_path": P.flag, "step_pattern": P.one_of("hv", "hvd"),
        "band": P.band, "centroids_per_class": P.count_or_all,
        "centroid_init": P.one_of("resample", "raw"), "resample_inputs": P.flag,
        "open_ends": P.flag, "tune": P.one_of("none", "cv"),
        "tune_folds": P.at_least_two,
        "w_one_init": P.flag, "freeze_centroids": P.flag, "freeze_weights": P.flag,
        "logit_head": P.one_of("temperature", "zscore"), "standardize": P.flag,
        "sample_size_per_class": P.count, "dba_max_iter": P.non_negative_int,
        "centroid_seed": P.seed, "std_eps": P.positive, "seed": P.seed,
        "layout": P.one_of(None, "ntf", "nct"), "device": P.device,
        "backend": P.one_of("auto", "ref", "numba", "cuda"), "cache_dir": P.optional_path,
        "run_dir": P.optional_path, "resume": P.flag, "verbose": P.flag,
    }

    def __init__(self, num_timesteps=D.MODEL["num_timesteps"],
                 num_epochs=D.TRAINING["num_epochs"], batch_size: int = D.TRAINING["batch_size"],
                 lr: float = D.TRAINING["lr"], ms_lr_div: float = D.TRAINING["ms_lr_div"],
                 weight_decay: float = D.TRAINING["weight_decay"],
                 warmup_epochs: int = D.TRAINING["warmup_epochs"],
                 min_lr_ratio: float = D.TRAINING["min_lr_ratio"],
                 use_fixed_path: bool = D.MODEL["use_fixed_path"],
                 step_pattern: str = D.STEP_PATTERN, band: Optional[float] = None,
                 centroids_per_class=1, centroid_init: str = "resample",
                 resample_inputs: bool = False, open_ends: bool = False,
                 tune: str = D.TUNING["tune"], tune_folds: int = D.TUNING["tune_folds"],
                 w_one_init: bool = D.MODEL["w_one_init"],
                 freeze_centroids: bool = D.MODEL["freeze_centroids"],
                 freeze_weights: bool = D.MODEL["freeze_weights"],
                 logit_head: str = D.MODEL["logit_head"],
                 standardize: bool = D.MODEL["standardize"],
                 sample_size_per_class: int = D.CENTROIDS["sample_size_per_class"],
                 dba_max_iter: int = D.CENTROIDS["dba_max_iter"],
                 centroid_seed: int = D.CENTROIDS["centroid_seed"],
                 std_eps: float = D.MODEL["std_eps"], seed: int = D.TRAINING["seed"],
                 layout: Optional[str] = None, device: str = D.MODEL["device"],
                 backend: str = D.MODEL["backend"], cache_dir: Optional[str] = None,
                 run_dir: Optional[str] = None, resume: bool = False, verbose: bool = False):
        self.num_timesteps = num_timesteps
        self.num_epochs = num_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.ms_lr_div = ms_lr_div
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.min_lr_ratio = min_lr_ratio
        self.use_fixed_path = use_fixed_path
        self.step_pattern = step_pattern
        self.band = band
        self.centroids_per_class = centroids_per_class
        self.centroid_init = centroid_init
        self.resample_inputs = resample_inputs
        self.open_ends = open_ends
        self.tune = tune
        self.tune_folds = tune_folds
        self.w_one_init = w_one_init
        self.freeze_centroids = freeze_centroids
        self.freeze_weights = freeze_weights
        self.logit_head = logit_head
        self.standardize = standardize
        self.sample_size_per_class = sample_size_per_class
        self.dba_max_iter = dba_max_iter
        self.centroid_seed = centroid_seed
        self.std_eps = std_eps
        self.seed = seed
        self.layout = layout
        self.device = device
        self.backend = backend
        self.cache_dir = cache_dir
        self.run_dir = run_dir
        self.resume = resume
        self.verbose = verbose

    def _settings(self):
        """The TrainSettings of these parameters ('auto' values are resolved by fit)."""
        from ..config.settings import (CentroidSpec, LoopSpec, ModelSpec, OptimSpec,
                                       TrainSettings)
        band = None if self.band is None else float(self.band)
        return TrainSettings(
            centroids=CentroidSpec(self.num_timesteps, self.step_pattern,
                                   self.sample_size_per_class, self.dba_max_iter,
                                   self.centroid_seed, self.backend,
                                   self._centroids_per_class(), band, self.centroid_init,
                                   bool(self.open_ends)),
            model=ModelSpec(self.step_pattern, bool(self.use_fixed_path), bool(self.w_one_init),
                            self.backend, self.logit_head, band, bool(self.resample_inputs),
                            bool(self.open_ends)),
            optim=OptimSpec(lr=float(self.lr), ms_lr_div=float(self.ms_lr_div),
                            weight_decay=float(self.weight_decay),
                            warmup_epochs=self.warmup_epochs,
                            min_lr_ratio=float(self.min_lr_ratio),
                            freeze_centroids=bool(self.freeze_centroids),
                            freeze_weights=bool(self.freeze_weights)),
            loop=LoopSpec(num_epochs=self.num_epochs, batch_size=self.batch_size,
                          seed=self.seed, std_eps=float(self.std_eps)))

    def _centroids_per_class(self):
        M = self.centroids_per_class
        return M if isinstance(M, str) else int(M)

    def _resume_hint(self) -> str:
        return (f"DejaVidClassifier(**params, run_dir={str(self.run_dir)!r}, resume=True)"
                f".fit(X, y) with the same X, y and parameters (or clf.set_params(resume=True)"
                f".fit(X, y))")

    def _checkpoint_to_resume(self) -> Optional[dict]:
        """The run folder's checkpoint when ``resume`` is set, checked against the parameters."""
        if not self.resume:
            return None
        if self.run_dir is None:
            raise ValueError("resume=True needs run_dir: the folder of the run to continue")
        from ..training.checkpoint import load_checkpoint
        ckpt = load_checkpoint(self.run_dir)
        saved, now = ckpt.get("config") or {}, self.get_params()
        changed = sorted(k for k in now if k not in RESUME_FREE and k in saved
                         and saved[k] != now[k])
        if changed:
            raise ValueError(f"run folder {self.run_dir} was trained with other parameters ("
                             + ", ".join(f"{k}={saved[k]!r}, now {now[k]!r}" for k in changed)
                             + "); resume with the same ones, or start a new run in another "
                               "run_dir")
        return ckpt

    def fit(self, X, y):
        """Train on series ``X`` (see ``layout``) with labels ``y`` (any values)."""
        from ..data.standardize import statistics
        from ..training.run import fit

        P.check_params(self, self.RULES)
        settings = self._settings()   # the remaining checks, before any work
        train_ds, classes = fit_inputs(X, y, self.layout)
        resume = self._checkpoint_to_resume()
        if self.standardize:   # (the items are raw until feature_stats is set)
            train_ds.index.feature_stats = statistics(train_ds[n][0] for n in range(len(train_ds)))
        log = print if self.verbose else (lambda *a, **k: None)
        config = self.get_params() if self.run_dir else None
        with quiet_cpu():
            self.tune_ = None
            if self.tune == "cv":
                settings, config = self._tuned(settings, train_ds, resume, config, log)
            result = fit(train_ds, None, settings, device=self.device, cache_dir=self.cache_dir,
                         run_dir=self.run_dir, resume=resume, config=config,
                         progress=bool(self.verbose), log=log,
                         resume_hint=self._resume_hint() if self.run_dir else None)
        if result.stopped:
            raise KeyboardInterrupt(f"training stopped by {result.stopped}; the checkpoint is "
                                    f"in {self.run_dir}; continue with {self._resume_hint()}")
        self.classes_ = classes
        self.n_features_in_ = train_ds.index.feature_size
        self.model_ = result.model
        self.model_.fixed_path = False   # prediction aligns with the trained parameters
        self.model_.eval()
        self.history_ = result.history
        self.feature_stats_ = train_ds.index.feature_stats
        return self

    def _tuned(self, settings, train_ds, resume, config, log):
        """(settings, config) of the candidate that ``tune='cv'`` chooses on the training
        series (``self.tune_``: its :class:`dejavid.training.tune.TuneResult`, or, on a
        resume, the choice the checkpoint recorded, which is kept, not made again)."""
        from ..training.tune import candidate_settings, cannot_tune, choose_on_dataset
        index = train_ds.index
        lengths = index.lengths[train_ds.rows]
        settings = settings.resolved(lengths)
        why = cannot_tune(index.labels[train_ds.rows], int(self.tune_folds))
        if why:
            warnings.warn(f"tune='cv' skipped ({why}); trained as configured", UserWarning,
                          stacklevel=3)
            return settings, config
        if resume is not None:
            chosen = (resume.get("config") or {}).get("tune_choice") or {}
            return candidate_settings(settings, chosen, lengths), {**config, "tune_choice": chosen}
        self.tune_ = choose_on_dataset(train_ds, settings, bool(self.standardize),
                                       int(self.tune_folds), self.device, bool(self.verbose),
                                       log)
        chosen = self.tune_.chosen
        return (candidate_settings(settings, chosen, lengths),
                None if config is None else {**config, "tune_choice": chosen})

    def predict_proba(self, X) -> np.ndarray:
        """[N, C] softmax of the logits DejaVid was trained with (its ``logit_head`` applied
        to the distances), so the probabilities rank as ``decision_function`` does."""
        import torch
        dist = torch.from_numpy(np.asarray(self._distances(X)))
        with torch.no_grad():
            logits = self.model_.head(dist.to(self.model_.mu.device))
        return torch.softmax(logits.double(), dim=1).cpu().numpy()

    def _class_distances(self, tensors) -> np.ndarray:
        """DejaVid distances [N, C] (float32), free path, in batches; reads the model only."""
        from ..model.layer import sequence_distances
        return sequence_distances(self.model_, tensors, self.feature_stats_,
                                  max(1, self.batch_size)).numpy()
