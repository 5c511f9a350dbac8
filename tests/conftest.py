"""Shared test setup: fixtures from tests/fixtures, paths to ../shared, no network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest_plugins = [
    "tests.fixtures.openai_server",
    "tests.fixtures.tiny_qwen2vl",
    "tests.fixtures.tiny_models",
    "tests.fixtures.tiny_clip",
    "tests.fixtures.videos",
    "tests.fixtures.grounding",
]

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TFVTG_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout (data/ and videos/); tests that need it skip when absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED} (set TFVTG_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def shared_videos(shared_dir: Path) -> Path:
    videos = shared_dir / "videos"
    if not (videos / "videos.json").is_file():
        pytest.skip(f"shared videos not found at {videos}")
    return videos


@pytest.fixture(scope="session")
def shared_data(shared_dir: Path) -> Path:
    data = shared_dir / "data"
    if not (data / "charades-sta" / "charades_test.json").is_file():
        pytest.skip(f"shared annotation files not found at {data}")
    return data
