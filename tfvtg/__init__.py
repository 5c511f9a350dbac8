"""tfvtg: training-free zero-shot video temporal grounding.

The public API is listed in ``__all__``. Heavy dependencies (torch, transformers, av, openai) are imported
only by the modules that need them, so ``import tfvtg`` is cheap and evaluation from cached features
starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from tfvtg.errors import InputError, LLMError, ModelError, TfvtgError, VideoError
from tfvtg.moment import Moment

__version__ = "0.1.0"

# Public name -> module that defines it, imported on first access (PEP 562). Functions named like their
# module (tfvtg.localize.localize, tfvtg.decompose.decompose) are not listed: the submodule would shadow them.
_LAZY = {
    "Proposals": "tfvtg.localize",
    "ground_with_scores": "tfvtg.pipeline",
    "GroundingResult": "tfvtg.pipeline",
    "Decomposition": "tfvtg.decompose",
    "Decomposer": "tfvtg.decompose",
    "LLMEndpoint": "tfvtg.llm",
    "Grounder": "tfvtg.grounder",
    "ground": "tfvtg.grounder",
    "VideoFeatures": "tfvtg.features",
    "load_features": "tfvtg.features",
    "create_encoder": "tfvtg.encoders",
    "list_encoders": "tfvtg.encoders",
    "sample_frames": "tfvtg.video",
    "Collection": "tfvtg.index",
    "SearchHit": "tfvtg.index",
}

__all__ = [
    "__version__",
    "Moment",
    "TfvtgError",
    "InputError",
    "VideoError",
    "ModelError",
    "LLMError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tfvtg' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
