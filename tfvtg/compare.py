"""Equality of values that hold numpy arrays: what ``==`` on tfvtg's result and feature records means.

A dataclass's generated ``__eq__`` compares its fields as tuples, and a numpy field makes that raise
("truth value of an array is ambiguous"). Records with array fields compare with `fields_equal` instead:
arrays by shape, dtype-independent values (NaN equal to NaN) and nested dicts/lists element by element.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["fields_equal", "values_equal"]


def values_equal(a: Any, b: Any) -> bool:
    """``a == b`` for plain values, arrays (same shape and values), and dicts/lists/tuples of them."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return False
        equal_nan = np.issubdtype(a.dtype, np.inexact) and np.issubdtype(b.dtype, np.inexact)
        return bool(np.array_equal(a, b, equal_nan=equal_nan))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(values_equal, a, b))
    return bool(a == b)


def fields_equal(a: Any, b: Any) -> Any:
    """The ``__eq__`` of a dataclass with array fields: same class and every field `values_equal`
    (``NotImplemented`` for another class, as ``__eq__`` returns)."""
    if type(a) is not type(b):
        return NotImplemented
    return all(values_equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
