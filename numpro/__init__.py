"""numpro: temporal grounding by numbering sampled frames for a multimodal LLM (NumPro, Wu et al., CVPR 2025).

Heavy dependencies are imported lazily, as in :mod:`tfvtg`.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "NumProGrounder": "numpro.ground",
    "SampledVideo": "numpro.ground",
    "overlay_numbers": "numpro.overlay",
    "parse_answer": "numpro.parse",
    "parse_time_answer": "numpro.parse",
    "parse_highlights": "numpro.parse",
    "FrameIndex": "numpro.parse",
    "create_mllm": "numpro.mllm",
    "MLLM": "numpro.mllm",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'numpro' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
