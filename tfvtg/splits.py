"""The out-of-distribution evaluation splits OOD-1 and OOD-2: noise features prepended to every video.

TFVTG's and TAG's evaluation scripts test robustness to where a moment sits in the video by prepending
``pad`` seconds of standard-normal noise features (Charades-STA 10 s / 15 s, ActivityNet Captions 30 s /
60 s, from both codes' data configs) and shifting every ground-truth span by ``pad``. The noise has
``round(T / duration * pad)`` frames, the features' own rate; the duration grows by ``pad``. The official
scripts draw it unseeded; here each video's noise comes from a generator seeded by the run's seed and the
video id, so a run is reproducible and a video gets the same noise whichever other videos are evaluated.

The Charades-CD and Charades-CG splits need nothing here: their annotation files are read as they are (see
`tfvtg.datasets`).
"""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np

from tfvtg.datasets import GroundingQuery
from tfvtg.errors import InputError
from tfvtg.features import VideoFeatures

__all__ = ["DEFAULT_SEED", "SPLITS", "pad_features", "pad_seconds", "shift_query", "video_rng"]

SPLITS = ("default", "ood-1", "ood-2")
DEFAULT_SEED = 0
_PAD_SECONDS = {
    "charades-sta": {"ood-1": 10.0, "ood-2": 15.0},
    "activitynet": {"ood-1": 30.0, "ood-2": 60.0},
}


def pad_seconds(dataset: str, split: str) -> float:
    """Seconds of noise the split prepends (0 for ``default``).

    Raises:
        InputError: Unknown split, or an OOD split of a dataset that has none (QVHighlights).
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if split == "default":
        return 0.0
    if dataset not in _PAD_SECONDS:
        raise InputError(f"split {split} is defined for {' and '.join(_PAD_SECONDS)} only, not {dataset}")
    return _PAD_SECONDS[dataset][split]


def video_rng(seed: int, vid: str) -> np.random.Generator:
    """The noise generator of one video: seeded by the run's seed and a CRC of the video id."""
    return np.random.default_rng([int(seed), zlib.crc32(vid.encode("utf-8"))])


def pad_features(features: VideoFeatures, seconds: float, rng: np.random.Generator) -> VideoFeatures:
    """``features`` with ``round(T / duration * seconds)`` frames of N(0, 1) noise features prepended.

    The noise frames are spread evenly over ``[0, seconds)``; the real frames' times and the duration move
    ``seconds`` later. The noise has the features' (Q, D) shape and dtype.
    """
    if seconds <= 0:
        return features
    n_frames = len(features.features)
    n_pad = round(n_frames / features.duration * seconds)
    if n_pad == 0:
        return features
    noise = rng.standard_normal((n_pad, *features.features.shape[1:])).astype(features.features.dtype)
    times = np.concatenate((np.arange(n_pad) * (seconds / n_pad), features.timestamps + seconds))
    return replace(
        features,
        features=np.concatenate((noise, features.features)),
        timestamps=times,
        duration=features.duration + seconds,
    )


def shift_query(query: GroundingQuery, seconds: float) -> GroundingQuery:
    """``query`` with its ground-truth spans and duration ``seconds`` later, as on a padded video."""
    if seconds <= 0:
        return query
    windows = tuple((start + seconds, end + seconds) for start, end in query.windows)
    return replace(query, windows=windows, duration=query.duration + seconds)
