"""The series an estimator is given, in the orientation DejaVid computes with ([T, F]).

Time-series libraries disagree on the axis order of a collection:

    layout='ntf'   [N, T, F]: tslearn, torch, dejavid's own (each series [T, F])
    layout='nct'   (n_cases, n_channels, n_timepoints): aeon, sktime (each series [F, T])

A 2-D array is N univariate series in both (aeon/sktime's (n_cases, n_timepoints)).  A
list (or 1-D object array) holds one 2-D series per item, of any length, in the same
orientation (a 1-D item is one univariate series).  With ``layout=None`` the estimator
assumes 'ntf' and says so when the data look transposed: series whose lengths differ
only along the feature axis are an error, and more features than steps in every series
is a warning (video embeddings do have F > T: pass ``layout='ntf'`` to say so).
Both messages name the parameter.
"""
from __future__ import annotations

import warnings

import numpy as np

LAYOUTS = ("ntf", "nct")


def check_layout(layout) -> None:
    """ValueError unless ``layout`` is None or one of :data:`LAYOUTS`."""
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be 'ntf' ([N, T, F]: tslearn, torch), 'nct' "
                         f"((n_cases, n_channels, n_timepoints): aeon, sktime) or None ('ntf', "
                         f"warning when X looks transposed), got {layout!r}")


def _numeric(x, what: str):
    """``x`` as a numeric array or tensor (tensors are kept), else ValueError naming it."""
    if _is_tensor(x):   # as_sequences checks a tensor's dtype
        return x
    try:
        a = np.asarray(x)
        if a.dtype == object or a.dtype.kind in "USV":
            a = a.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} holds values that are not numbers; every series must be a "
                         f"numeric array") from None
    if a.dtype.kind == "c":
        raise ValueError(f"{what}: Complex data not supported; every series must be real")
    if not a.flags.writeable:   # (a read-only memmap: torch warns on sharing it)
        a = a.copy()
    return a


def _is_tensor(x) -> bool:
    return hasattr(x, "detach") and hasattr(x, "dim")


def _items(X, what: str) -> tuple[list, bool]:
    """(the series of ``X`` as given, whether they are univariate rows of a 2-D array)."""
    if isinstance(X, (list, tuple)):
        return list(X), False
    if hasattr(X, "toarray") and hasattr(X, "nnz"):   # scipy.sparse
        raise ValueError(f"{what} is a sparse matrix: sparse data is not supported; pass a "
                         f"dense array (X.toarray())")
    arr = X if _is_tensor(X) else np.asarray(X)
    if not _is_tensor(arr) and arr.dtype == object and arr.ndim == 1:
        return list(arr), False   # aeon/sktime's ragged collection
    if arr.ndim in (2, 3) and 0 in tuple(arr.shape):
        empty = "sample(s)" if arr.shape[0] == 0 else "feature(s)"
        raise ValueError(f"{what}: 0 {empty} (shape={tuple(arr.shape)}) while a minimum of 1 is "
                         f"required; every series needs a step and a feature")
    if arr.ndim == 2:
        arr = _numeric(arr, what)
        return [row[:, None] for row in arr], True
    if arr.ndim == 3:
        return list(_numeric(arr, what)), False
    raise ValueError(f"{what} must be [N, T, F], (n_cases, n_channels, n_timepoints), [N, T] "
                     f"(N univariate series) or a list of series, got "
                     + (f"an array of shape {tuple(arr.shape)}" if arr.ndim
                        else type(X).__name__)
                     + ("; Reshape your data: one series is X[None] (or [x])" if arr.ndim == 1
                        else ""))


def series_of(X, layout=None, what: str = "X", warn: bool = True) -> list:
    """The series of ``X`` as a list of [T, F] arrays or tensors (views where possible).

    Raises ValueError for a collection whose items are not 2-D numeric series, and for
    ragged series that only make sense in the other layout; warns (``warn``, with
    ``layout=None``) when every series has more features than steps.  The remaining
    checks (one F, T >= 1, finite values) are :func:`dejavid.data.arrays.as_sequences`'s.
    """
    check_layout(layout)
    items, univariate = _items(X, what)
    if not items:
        raise ValueError(f"{what} holds no series (0 sample(s)); a minimum of 1 is required")
    out = []
    for n, x in enumerate(items):
        x = _numeric(x, f"{what}[{n}]")
        if x.ndim == 1:   # one univariate series of T steps
            x, univariate = x[:, None], True
        if x.ndim != 2:
            axes = "(n_channels, n_timepoints)" if layout == "nct" else "[T, F]"
            raise ValueError(f"{what}[{n}] must be 2-D {axes}, got shape {tuple(x.shape)}")
        out.append(x.T if layout == "nct" and not univariate else x)
    if not univariate:
        _check_orientation(out, layout, what, warn)
    return out


def _check_orientation(series: list, layout, what: str, warn: bool) -> None:
    steps = {int(s.shape[0]) for s in series}
    feats = {int(s.shape[1]) for s in series}
    other = "nct" if layout != "nct" else "ntf"
    lib = ("as aeon and sktime store them" if other == "nct"
           else "as tslearn and torch store them")
    if len(feats) > 1 and len(steps) == 1:
        first = next(n for n, s in enumerate(series) if s.shape[1] != series[0].shape[1])
        raise ValueError(
            f"{what}[{first}] has {series[first].shape[1]} features but {what}[0] has "
            f"{series[0].shape[1]}, while every series has {steps.pop()} steps: the series look "
            f"like {'(n_channels, n_timepoints)' if other == 'nct' else '[T, F]'} {lib}; pass "
            f"layout={other!r}")
    if warn and layout is None and min(feats) > max(steps):
        warnings.warn(
            f"every series in {what} has more features (F = {min(feats)}) than steps "
            f"(T <= {max(steps)}): if {what} is (n_cases, n_channels, n_timepoints) as in aeon "
            f"and sktime, pass layout='nct'; if it really is [N, T, F], pass layout='ntf' to "
            f"silence this warning", UserWarning, stacklevel=4)
