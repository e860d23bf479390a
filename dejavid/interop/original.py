"""Files of the original DejaVid (github.com/darrylho/DejaVid), read without trusting them.

What the original writes (its main_dist.py and engine_dist.py, PyTorch 2.3; ``commons.py``
makes CUDA the default device, so every tensor below lives on a GPU when it is saved):

* **Centroid cache** ``<prefix>_cached_median_djv3_<K>_<seed>_<n>_<iter>_<C>_<F>_mm<u>.pkl``,
  written once by ``pickle.dump(mean_series, file)`` and read back by ``pickle.load``.
  ``mean_series`` is a float32 tensor ``[C, K, F]``: one DBA centroid per class, classes in
  sorted order of the (contiguously remapped) labels, K centroid steps, F features per step.
  The name's fields are its command-line arguments: K ``--num_timesteps``, seed ``--seed``,
  n ``--sample_size_per_class``, iter ``--max_iter``, C ``--num_classes``, F
  ``--num_feats_per_timestep``, u ``--use_mm`` (0: no diagonal step).
* **Saved model** (``--save_model 1``: rank 0 after every epoch, in ``saved_models/``):

  - ``k_feats_rank_0_<time>.pkl``: ``pickle.dump(model.mean_series.data, file)``, the trained
    centroids ``[C, K, F]``, the same format as the cache;
  - ``feat_log_weights_rank_0_<time>.pt``: ``torch.save(model.feat_log_weights.data, file)``,
    the trained log-weights ``[C, K, F]`` (a torch.save zip archive).  The original weighs
    each feature by ``exp(log-weight)``: its distance is
    ``sum over the path of sum_f exp(theta[c,i,f]) * |mu[c,i,f] - x[j,f]|``, which is
    dejavid's ``theta`` exactly (docs/DESIGN.md section 4).  The original reads it back with
    ``torch.load(path, map_location=cuda)`` through ``--load_weights_path``.

How ``pickle.dump`` stores a tensor: a call of ``torch._utils._rebuild_tensor_v2(storage,
offset, size, stride, requires_grad, OrderedDict())`` whose storage is itself a call of
``torch.storage._load_from_bytes(b)``, ``b`` being a torch.save (legacy format) of the
storage that records the device it came from (``'cuda:0'``).  A plain ``pickle.load`` runs
``torch.load(b)`` without ``map_location`` (so it fails on a CPU-only machine) and, like any
unpickling, runs whatever callables the file names.

So these files are read here only from paths the user names, and through a restricted
unpickler that resolves exactly three globals: ``_rebuild_tensor_v2`` (wrapped: it must get
a tensor storage and no hooks), ``_load_from_bytes`` (replaced by a CPU, ``weights_only``
``torch.load`` of the storage bytes) and ``collections.OrderedDict`` (the empty hooks
argument).  Any other global (e.g. ``os.system``) is refused before anything is called,
and the file must hold one tensor.  torch.save files are read with ``torch.load(...,
map_location='cpu', weights_only=True)``.

Importing turns the files into dejavid's own:

* :func:`import_centroid_cache` writes a dejavid centroid-cache entry keyed, like every
  entry, by the user's config and the fingerprint of the user's training data *at import
  time*; the entry also records where it came from (``imported_from``: path, sha256, the
  settings in the file name).  A later change to the data or to any setting misses it, so a
  stale cache is still never silently reused.  That the file was computed from this data is
  the user's word: dejavid cannot recompute the original's reservoir sampling.  The name's
  settings (when it has the original's pattern) must agree with the config, so the entry
  records the settings that produced it; an existing entry is never overwritten.
* :func:`import_checkpoint` writes a dejavid checkpoint (the format of
  ``engine.save_checkpoint``) holding the released centroids and log-weights, the user's
  config and class labels, and nothing left to train, for
  ``train_dejavid.py --eval-only --checkpoint FILE``.
"""
from __future__ import annotations

import collections
import hashlib
import io
import math
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Optional

import torch

from ..model.centroids import cache_path, centroid_meta
from ..training.checkpoint import load_checkpoint, save_checkpoint
from ..data.dataset import DataIndex
from ..io import atomic_torch_save
from ..model.layer import DejaVid
from ..training.optim import build_optimizer, build_scheduler
from ..config.settings import settings_from_config

CACHE_NAME = re.compile(r"_cached_median_djv3_(\d+)_(-?\d+)_(\d+)_(\d+)_(\d+)_(\d+)_mm(\d+)\.pkl$")
# Fields of the original's cache name -> (dejavid config key or None, its argument name).
NAME_FIELDS = (("num_timesteps", "num_timesteps"), ("centroid_seed", "seed"),
               ("sample_size_per_class", "sample_size_per_class"), ("dba_max_iter", "max_iter"),
               ("num_classes", "num_classes"), ("feature_size", "num_feats_per_timestep"),
               ("use_mm", "use_mm"))


class _Refused(pickle.UnpicklingError):
    """The file asks for something other than a tensor."""


def _storage_from_bytes(b):
    """Stands in for torch.storage._load_from_bytes: the storage, on the CPU, read with
    torch's weights_only loader (whatever device it was saved from)."""
    if not isinstance(b, bytes):
        raise _Refused("a tensor storage that is not stored as bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # TypedStorage deprecation notice
            storage = torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _Refused(f"a tensor storage that torch's weights_only loader refuses ({exc})") from exc
    if not isinstance(storage, torch.storage.TypedStorage):
        raise _Refused(f"a {type(storage).__name__} where a tensor storage belongs")
    return storage


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False,
                    backward_hooks=None, metadata=None):
    """torch._utils._rebuild_tensor_v2 for plain tensors only (no hooks, no metadata)."""
    def ints(v):
        return isinstance(v, tuple) and all(isinstance(n, int) and n >= 0 for n in v)
    if not isinstance(storage, torch.storage.TypedStorage):
        raise _Refused("a tensor built from something other than a tensor storage")
    if not (isinstance(storage_offset, int) and ints(size) and ints(stride)):
        raise _Refused("a tensor with a malformed size, stride or offset")
    if backward_hooks or metadata:
        raise _Refused("a tensor carrying hooks or extra metadata")
    if len(size) != len(stride):
        raise _Refused("a tensor with a malformed size, stride or offset")
    # Checked before torch sees them: set_() would grow the storage to any declared extent
    # (a 400-byte file could ask for gigabytes).  A view of part of its storage (offset,
    # strides) is what pickling a view writes, and stays accepted.
    stored = storage.size()
    numel = math.prod(size)
    extent = storage_offset + sum((n - 1) * st for n, st in zip(size, stride)) + 1 if numel else 0
    if extent > stored:
        raise _Refused(f"a tensor of shape {list(size)} (stride {list(stride)}, offset "
                       f"{storage_offset}) reaching element {extent} of a storage holding "
                       f"only {stored} values")
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, False,
                                           collections.OrderedDict())


class _TensorUnpickler(pickle.Unpickler):
    """Resolves only what a pickled tensor needs; refuses every other global."""

    ALLOWED = {("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
               ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
               ("collections", "OrderedDict"): collections.OrderedDict}

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"the global {module}.{name}") from None

    def persistent_load(self, pid):
        raise _Refused("a persistent reference")


def load_original_tensor(path: str | Path, what: str = "tensor") -> torch.Tensor:
    """The float32 CPU tensor of one file the original wrote (pickle.dump or torch.save).

    FileNotFoundError if missing; ValueError naming the file if it holds anything but one
    floating-point tensor with finite values (nothing it names is run).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        if zipfile.is_zipfile(path):
            obj = torch.load(path, map_location="cpu", weights_only=True)
        else:
            with open(path, "rb") as fh:
                obj = _TensorUnpickler(fh).load()
            if isinstance(obj, int) and obj == torch.serialization.MAGIC_NUMBER:
                # A torch.save file in the pre-1.6 format (starts with its magic number).
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except _Refused as exc:
        raise ValueError(f"refusing to load {what} file {path}: it holds {exc}; only tensors "
                         f"are accepted (the original DejaVid writes a pickled tensor)") from None
    except Exception as exc:
        raise ValueError(f"cannot read {what} file {path} as a tensor saved by the original "
                         f"DejaVid ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, torch.Tensor):
        raise ValueError(f"{what} file {path} holds a {type(obj).__name__}, not a tensor "
                         f"[C, K, F] as the original DejaVid writes it")
    if not obj.is_floating_point():
        raise ValueError(f"{what} file {path} holds a {obj.dtype} tensor; expected float values")
    # A fresh tensor: nothing the pickle attached to the loaded one (state set on it by a
    # BUILD opcode, say) comes along.
    obj = obj.detach().to("cpu", torch.float32).clone(memory_format=torch.contiguous_format)
    if obj.dim() != 3:
        raise ValueError(f"{what} file {path} holds a tensor of shape {tuple(obj.shape)}; the "
                         f"original writes [C, K, F] (classes, centroid steps, features)")
    if not bool(torch.isfinite(obj).all()):
        raise ValueError(f"{what} file {path} contains NaN or Inf values")
    return obj


def parse_cache_name(path: str | Path) -> Optional[dict]:
    """The original's arguments encoded in a centroid-cache file name, or None when the
    name does not follow its pattern."""
    m = CACHE_NAME.search(Path(path).name)
    if m is None:
        return None
    return {arg: int(v) for (_, arg), v in zip(NAME_FIELDS, m.groups())}


def check_against(t: torch.Tensor, path: Path, what: str, cfg: dict, index: DataIndex) -> None:
    """ValueError saying what to fix when [C, K, F] does not fit the data or the config."""
    if cfg.get("standardize"):
        raise ValueError(f"{what} file {path} holds parameters of the raw features, but the "
                         f"config standardises them (standardize: true); set standardize: false "
                         f"(as the paper configs do) to use the original's files")
    C, K, F = t.shape
    if C != index.num_classes:
        raise ValueError(f"{what} file {path} has C = {C} classes but the data in your config "
                         f"has {index.num_classes} classes with training videos; point the "
                         f"config at the data the file was made for")
    if F != index.feature_size:
        raise ValueError(f"{what} file {path} has F = {F} features per step but your data has "
                         f"{index.feature_size}; point the config at the features the file "
                         f"was made for")
    if K != cfg["num_timesteps"]:
        raise ValueError(f"{what} file {path} has K = {K} centroid steps but the config has "
                         f"num_timesteps = {cfg['num_timesteps']}; pass --num_timesteps {K}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_name_settings(path: Path, settings: dict, mu: torch.Tensor, cfg: dict) -> None:
    """The cache name's arguments must match its contents and the config."""
    C, K, F = mu.shape
    for arg, have in (("num_classes", C), ("num_timesteps", K), ("num_feats_per_timestep", F)):
        if settings[arg] != have:
            raise ValueError(f"centroid cache {path}: its name says {arg} {settings[arg]} but it "
                             f"holds a [C, K, F] = {list(mu.shape)} tensor; the file was renamed "
                             f"or damaged")
    for key, arg in NAME_FIELDS:
        if key in ("num_classes", "feature_size", "num_timesteps"):
            continue   # checked against the file's contents and the data
        if settings[arg] != cfg[key]:
            raise ValueError(f"centroid cache {path} was computed with --{arg} {settings[arg]} "
                             f"but the config has {key} = {cfg[key]}; pass --{key} "
                             f"{settings[arg]} so that the cache entry records the settings "
                             f"that produced it")


def import_centroid_cache(path: str | Path, cfg: dict, index: DataIndex) -> Path:
    """Write the original's centroid cache as a dejavid cache entry for ``cfg`` and its data
    ``index``; returns the entry's path.  Training with the same config and data then starts
    from these centroids ("reusing cached centroids ...")."""
    path = Path(path)
    mu = load_original_tensor(path, "centroid cache")
    settings = parse_cache_name(path)
    if settings is not None:
        _check_name_settings(path, settings, mu, cfg)
    check_against(mu, path, "centroid cache", cfg, index)
    meta = centroid_meta(index, cfg["train_split"], settings_from_config(cfg).centroids)
    out = cache_path(cfg["cache_dir"], meta)
    if out.exists():
        raise ValueError(f"a centroid cache entry for these data and settings already exists: "
                         f"{out}; delete it to replace it with {path}")
    atomic_torch_save({"mu": mu, "meta": meta, "label_values": list(index.label_values),
                       "imported_from": {"file": str(path.resolve()), "sha256": _sha256(path),
                                         "format": "original DejaVid centroid cache",
                                         "name_settings": settings}}, out)
    return out


def import_checkpoint(centroids: str | Path, log_weights: str | Path, cfg: dict,
                      index: DataIndex, out: str | Path) -> Path:
    """Write the original's saved model (``k_feats_*.pkl`` and ``feat_log_weights_*.pt``)
    as a dejavid checkpoint at ``out`` for ``train_dejavid.py --eval-only --checkpoint``.

    The checkpoint holds the user's config (so evaluation reads the user's data) and marks
    the run as finished: ``--resume`` on it has nothing left to train.
    """
    centroids, log_weights, out = Path(centroids), Path(log_weights), Path(out)
    mu = load_original_tensor(centroids, "centroids (k_feats)")
    theta = load_original_tensor(log_weights, "log-weights (feat_log_weights)")
    if mu.shape != theta.shape:
        raise ValueError(f"the centroids {centroids} are {list(mu.shape)} but the log-weights "
                         f"{log_weights} are {list(theta.shape)}; use the two files saved "
                         f"together (same rank and time stamp)")
    check_against(mu, centroids, "centroids (k_feats)", cfg, index)
    if out.exists():
        raise ValueError(f"{out} already exists; choose another --out or delete it")
    settings = settings_from_config(cfg)
    model = DejaVid(mu, settings.model.step_pattern, settings.model.use_fixed_path,
                    w_one_init=True, backend=settings.model.backend)
    with torch.no_grad():
        model.theta.copy_(theta)
    optimizer = build_optimizer(model, settings.optim)
    save_checkpoint(out, model=model, optimizer=optimizer,
                    scheduler=build_scheduler(optimizer, settings.optim, settings.loop.num_epochs),
                    config=cfg,
                    label_values=index.label_values, epoch=cfg["num_epochs"], step=0,
                    running=None, best_top1=-1.0, history=[])
    state = load_checkpoint(out)   # our own file, just written
    state["imported_from"] = {
        "centroids": {"file": str(centroids.resolve()), "sha256": _sha256(centroids)},
        "log_weights": {"file": str(log_weights.resolve()), "sha256": _sha256(log_weights)},
        "format": "original DejaVid saved model"}
    atomic_torch_save(state, out)
    return out
