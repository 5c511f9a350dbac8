"""The exceptions tfvtg raises on bad input or a broken environment.

Every error a user can cause or fix is a `TfvtgError`; the command line prints its message on one line and
exits non-zero. Anything else escaping the toolkit is a bug.
"""

from __future__ import annotations

__all__ = ["TfvtgError", "InputError", "VideoError", "ModelError", "LLMError"]


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
