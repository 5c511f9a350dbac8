"""Where tfvtg keeps its caches: one root for feature files (``features/``) and LLM answers (``llm/``)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """``$TFVTG_CACHE``, else ``$XDG_CACHE_HOME/tfvtg``, else ``~/.cache/tfvtg``."""
    root = os.environ.get("TFVTG_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "tfvtg"
