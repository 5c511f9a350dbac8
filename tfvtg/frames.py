"""Frames already in memory as a video: a (T, H, W, 3) uint8 array with its frame rate or frame times.

For frames a caller decoded, generated or cropped itself. The array must be clean: RGB uint8, at least one
frame, and its time axis given once (``fps`` or ``timestamps``, finite and increasing); nothing is guessed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tfvtg.encoders.base import Encoder
from tfvtg.errors import InputError
from tfvtg.video import check_fps

__all__ = ["encode_frames"]


def _frame_times(n: int, fps: Any, timestamps: Any, duration: Any) -> tuple[np.ndarray, float, float]:
    """(T,) times, the duration and the rate, from exactly one of ``fps`` and ``timestamps``."""
    if (fps is None) == (timestamps is None):
        raise InputError("give the frames' time axis once: fps= (frames evenly spaced from 0 s) or "
                         "timestamps= (one time in seconds per frame)")
    if fps is not None:
        rate = check_fps(fps)
        times = np.arange(n, dtype=np.float64) / rate
    else:
        times = np.asarray(timestamps, dtype=np.float64) if not isinstance(timestamps, str) else np.empty(0)
        if times.shape != (n,):
            raise InputError(f"timestamps must hold one time per frame ({n}), got shape {times.shape}")
        if not np.all(np.isfinite(times)) or times[0] < 0 or np.any(np.diff(times) <= 0):
            raise InputError("timestamps must be finite seconds >= 0, strictly increasing")
        rate = (n - 1) / float(times[-1] - times[0]) if n > 1 else math.nan
    if duration is None:
        if not math.isfinite(rate):
            raise InputError("one frame with timestamps= has no length: give duration= (seconds)")
        end = float(times[-1]) + 1.0 / rate  # the last frame lasts one frame interval
    else:
        ok = isinstance(duration, (int, float, np.integer, np.floating)) and not isinstance(duration, bool)
        end = float(duration) if ok else math.nan
        if not (math.isfinite(end) and end > times[-1]):
            raise InputError(f"duration must be a number of seconds after the last frame's time "
                             f"({times[-1]:g} s), got {duration!r}")
    return times, end, rate if math.isfinite(rate) else 1.0 / end


def encode_frames(
    frames: Any,
    encoder: Encoder,
    *,
    fps: float | None = None,
    timestamps: Any = None,
    duration: float | None = None,
    name: str = "<frames>",
) -> Any:
    """Encode in-memory frames into `tfvtg.features.VideoFeatures`, as `extract_features` does a file.

    Args:
        frames: (T, H, W, 3) uint8 RGB array, T >= 1; any size (the encoder resizes).
        encoder: Any `Encoder`.
        fps: Frame rate: frame k is at k / fps seconds. Give this or ``timestamps``.
        timestamps: (T,) increasing frame times in seconds.
        duration: Video length in seconds (default: the last frame's time plus one frame interval).
        name: What the features record as their video.

    Raises:
        InputError: Not a (T, H, W, 3) uint8 array, no frame, or a time axis missing, doubled or not
            increasing.
    """
    from tfvtg.features import VideoFeatures

    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        what = type(frames).__name__
        if isinstance(frames, np.ndarray):
            what = f"an array of shape {frames.shape}"
        raise InputError(f"frames must be a (T, H, W, 3) RGB array with T >= 1, got {what}")
    if frames.dtype != np.uint8:
        raise InputError(f"frames must be uint8 (0-255 RGB), got {frames.dtype}; convert them first")
    times, end, rate = _frame_times(len(frames), fps, timestamps, duration)
    features = np.asarray(encoder.encode_images(frames)).astype(np.float16)
    return VideoFeatures(features=features, timestamps=times, duration=end, fps=rate,
                         encoder=encoder.config.name, image_size=tuple(encoder.config.image_size),
                         sampling="timestamp", video=name)
