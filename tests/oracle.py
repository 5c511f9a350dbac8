"""Access to benchmarks/official_tfvtg.py (the literal transcription of the official algorithm) from tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "official_tfvtg.py"
_spec = importlib.util.spec_from_file_location("official_tfvtg", _PATH)
official = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(official)
