"""Hyper-parameter checks at ``fit``, as scikit-learn's estimators do them.

The constructors store their arguments unchanged (``clone`` and ``set_params`` rely on
it); ``fit`` checks them all first, so that ``num_timesteps=4.5`` or ``lr="0.1"`` is a
ValueError naming the parameter, never a TypeError from deep inside training.  Each rule
is a small function of (name, value); :func:`check_params` applies a table of them.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable

import numpy as np

Rule = Callable[[str, object], None]


def _integer(name, value, low, auto=False):
    if auto and value == "auto":
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        extra = " or 'auto'" if auto else ""
        raise ValueError(f"{name} must be a whole number >= {low}{extra}, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")


def count(name, value):
    """A whole number >= 1."""
    _integer(name, value, 1)


def count_or_auto(name, value):
    """A whole number >= 1, or 'auto' (derived from the training data)."""
    _integer(name, value, 1, auto=True)


def non_negative_int(name, value):
    _integer(name, value, 0)


def seed(name, value):
    _integer(name, value, 0)
    if value > 2**32 - 1:
        raise ValueError(f"{name} must be at most 2**32 - 1, got {value!r}")


def _real(name, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def positive(name, value):
    if _real(name, value) <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def non_negative(name, value):
    if _real(name, value) < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def fraction(name, value):
    if not 0 <= _real(name, value) <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def flag(name, value):
    if not isinstance(value, (bool, numbers.Integral, np.bool_)) or value not in (0, 1):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def optional_path(name, value):
    if value is not None and not isinstance(value, (str, bytes)) and not hasattr(
            value, "__fspath__"):
        raise ValueError(f"{name} must be a folder path or None, got {value!r}")


def device(name, value):
    if hasattr(value, "type") and hasattr(value, "index"):   # a torch.device
        return
    if not isinstance(value, str) or not (value in ("auto", "cpu", "cuda")
                                          or value.startswith("cuda:")):
        raise ValueError(f"{name} must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}")


def one_of(*choices) -> Rule:
    """A rule accepting exactly ``choices``."""
    def rule(name, value):
        if not any(value is c or (type(value) is type(c) and value == c) for c in choices):
            raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, "
                             f"got {value!r}")
    return rule


def check_params(estimator, rules: dict[str, Rule]) -> None:
    """Apply ``rules`` (parameter name -> rule) to the estimator's current parameters."""
    for name, rule in rules.items():
        rule(name, getattr(estimator, name))


def band(name, value):
    """None (no band) or a fraction > 0 of the diagonal's span."""
    if value is None:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not np.isfinite(value) or not value > 0:
        raise ValueError(f"{name} must be None or a fraction > 0 (e.g. 0.1), got {value!r}")


def count_or_all(name, value):
    """A whole number >= 1, or 'all'."""
    if isinstance(value, str) and value == "all":
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1 or 'all', got {value!r}")


def at_least_two(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < 2:
        raise ValueError(f"{name} must be a whole number >= 2, got {value!r}")
