"""Access from tests to the literal transcriptions in benchmarks/: official_tfvtg.py (TFVTG's official
algorithm), official_tag.py (TAG's) and tag_curves.py (the synthetic scene videos the TAG scripts use)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

_BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, _BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


official = _load("official_tfvtg")


def official_tag() -> ModuleType:
    """benchmarks/official_tag.py (imports torch, so loaded on demand)."""
    return _load("official_tag")


def tag_curves() -> ModuleType:
    """benchmarks/tag_curves.py."""
    return _load("tag_curves")
