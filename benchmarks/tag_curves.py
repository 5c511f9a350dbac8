"""Synthetic inputs for TAG: a similarity curve and the winning-token features of a video made of scenes.

Used by benchmarks/bench_tag.py, benchmarks/tag_seed_stability.py and tests/test_tag.py. A video of T
frames is cut into 3-8 scenes; each scene has its own feature direction (BLIP-2-like raw token features: norm
~ 6 in 256 dimensions) plus per-frame noise; the curve is a smooth base around the mask threshold with the
described moment (one scene, or a span inside it) raised above it.
"""

from __future__ import annotations

import numpy as np


def scene_video(n: int, dim: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(curve (n,) float32, features (n, dim) float32, the moment's frames [lo, hi)) of one query."""
    rng = np.random.default_rng(seed)
    scenes = int(rng.integers(3, 9))
    cuts = np.sort(rng.choice(np.arange(2, n - 2), scenes - 1, replace=False))
    label = np.searchsorted(cuts, np.arange(n), side="right")
    means = rng.normal(0, 6 / np.sqrt(dim), (scenes, dim))
    features = means[label] + rng.normal(0, 3 / np.sqrt(dim), (n, dim))
    base = np.convolve(rng.normal(rng.uniform(0.17, 0.24), 0.03, n + 8), np.ones(9) / 9, "valid")[:n]
    target = int(rng.integers(scenes))
    inside = np.flatnonzero(label == target)
    lo, hi = inside[0], inside[-1] + 1
    if hi - lo > 6 and rng.random() < 0.5:  # the moment is only part of its scene
        lo = int(rng.integers(lo, hi - 3))
        hi = int(rng.integers(lo + 3, hi + 1))
    bump = np.zeros(n)
    bump[lo:hi] = rng.uniform(0.04, 0.15)
    curve = base + np.convolve(bump, np.ones(3) / 3, "same") + rng.normal(0, 0.01, n)
    return curve.astype(np.float32), features.astype(np.float32), (int(lo), int(hi))
