"""The exceptions tfvtg raises on bad input or a broken environment.

Every error a user can cause or fix is a `TfvtgError`; the command line prints its message on one line and
exits non-zero. Anything else escaping the toolkit is a bug.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "TfvtgError", "InputError", "VideoError", "ModelError", "LLMError", "check_count", "check_path",
    "first_line", "one_line",
]


def one_line(exc: BaseException) -> str:
    """A library exception's message on one line (white space collapsed), for quoting in an error message."""
    return " ".join(str(exc).split()) or type(exc).__name__


def first_line(exc: BaseException) -> str:
    """The first line of a library exception's message (long multi-line reports shortened to their gist)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def check_count(value: Any, name: str) -> int:
    """``value`` as an int >= 1; an `InputError` naming ``name`` for anything else (2.7, "3", True, None)."""
    import numpy as np

    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}"[:160])
    return int(value)


def check_path(value: Any, name: str, what: str = "file") -> None:
    """Refuse a ``value`` that is not a path (str or os.PathLike): an `InputError` naming ``name``."""
    if not isinstance(value, (str, os.PathLike)):
        raise InputError(f"{name} must be a {what} path, got {type(value).__name__}")


class TfvtgError(Exception):
    """Base class: a problem the user can act on; the message says what was wrong and what to do."""


class InputError(TfvtgError, ValueError):
    """An argument, query, curve, annotation or feature file is invalid."""


class VideoError(TfvtgError):
    """A video cannot be opened or decoded (missing, not media, no video stream, no decodable frame)."""


class ModelError(TfvtgError):
    """A model cannot be created or loaded (unknown name, missing weights, no network, out of memory)."""


class LLMError(TfvtgError):
    """A language-model endpoint failed in a way that no fallback covers."""
