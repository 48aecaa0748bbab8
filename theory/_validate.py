"""Argument checks shared by ``theory``: counts are ints, tolerances finite numbers.

A float count (``steps=2.5``) or a NaN tolerance would otherwise be truncated or compare False
silently; these helpers raise a ``TypeError`` (wrong kind) or ``ValueError`` (wrong value)
naming the argument instead.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["check_count", "check_tolerance", "check_time_limit", "check_counts"]


def check_count(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int ≥ ``minimum``; bools, floats and strings are a TypeError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name}: expected an integer ≥ {minimum}, got {value}")
    return value


def check_counts(values, name: str, minimum: int = 1) -> tuple:
    """A non-empty sequence of ints ≥ ``minimum`` (e.g. ``lift_degrees``)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name}: expected a sequence of integers, got {type(values).__name__} {values!r}")
    out = tuple(check_count(v, f"{name}[{i}]", minimum) for i, v in enumerate(values))
    if not out:
        raise ValueError(f"{name}: expected at least one entry, got an empty sequence")
    return out


def check_tolerance(value, name: str, *, positive: bool = True, finite: bool = True) -> float:
    """A real tolerance: > 0 (``positive``) or ≥ 0, finite unless ``finite=False``; NaN is refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    what = "positive" if positive else "nonnegative"
    if math.isnan(value) or (finite and math.isinf(value)) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name}: expected a {what}{' finite' if finite else ''} number, got {value!r}")
    return value


def check_time_limit(value, name: str = "time_limit") -> float:
    """A positive finite number of seconds."""
    return check_tolerance(value, name, positive=True, finite=True)
