"""Proposals for one similarity curve: TFVTG's dynamic start + static score, NMS and top-k.

This is sections 3.1-3.4 of docs/TFVTG-METHOD.md, vectorised: the static score of every window of every
allowed length comes from prefix sums in one pass, the "rising" test and the dynamic start are array
operations, and NMS sorts and visits only as many candidates as it needs to find ``top_k`` survivors.

Everything works in frame units on a (T,) curve. A window is the frames ``[i, i + L)``; its proposal is
``[d(i), i + L)`` where ``d(i) <= i`` is the dynamic start (the start pulled back over the rising run that
ends at ``i``). Fractions are frame / T, as the official code's moments are.

Profiles (see DESIGN.md): ``"reference"`` makes the official code's decisions; ``"default"`` fixes its bugs:
the window that holds every active frame is kept with an outside mean of 0 instead of being dropped or turning
into NaN (B1), confidences are normalised so that they never invert when the best score is <= 0 (B2), a curve
with no frame above the mask threshold is localised unmasked instead of returning [0, 0], and short curves (T
< 2) give the whole curve instead of crashing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfvtg.errors import InputError

__all__ = [
    "PRESETS",
    "PROFILES",
    "Preset",
    "Proposals",
    "dynamic_starts",
    "effective_windows",
    "gaussian_taps",
    "localize",
    "resolve_preset",
    "rising_mask",
    "static_scores",
    "window_frames",
]

PROFILES = ("default", "reference")
RISING_THRESHOLD = 5e-4  # theta of the rising test (BLIP-2 cosine units)
_NO_SCORE = -np.inf
_SMALL_NMS = 400  # up to this many candidates, NMS uses a full IoU matrix


@dataclass(frozen=True)
class Preset:
    """Window lengths of a dataset configuration of the method, in feature frames.

    Attributes:
        stride: Length quantum S: windows are S, 2S, ... frames long (capped at T // 2).
        max_stride_factor: The longest window is ``int(T * max_stride_factor)`` frames.
    """

    stride: int
    max_stride_factor: float

    def windows(self, n_frames: int) -> tuple[int, int]:
        """(stride, max_stride) in frames for a curve of ``n_frames``."""
        return self.stride, int(n_frames * self.max_stride_factor)


PRESETS: dict[str, Preset] = {
    "charades": Preset(stride=20, max_stride_factor=0.5),
    "activitynet": Preset(stride=40, max_stride_factor=1.0),
    "qvhighlights": Preset(stride=50, max_stride_factor=0.5),
}
_PRESET_ALIASES = {
    "charades-sta": "charades",
    "charades_sta": "charades",
    "anet": "activitynet",
    "activitynet-captions": "activitynet",
    "qvhighlight": "qvhighlights",
    "qvh": "qvhighlights",
}
AUTO_CHARADES_MAX_SECONDS = 60.0
METHOD_FPS = 3.0  # the rate the presets' frame counts assume


def resolve_preset(name: str, duration: float | None = None) -> str:
    """The canonical preset name; ``"auto"`` picks charades up to 60 s and activitynet beyond.

    Raises:
        InputError: Unknown preset, or ``"auto"`` without a duration.
    """
    key = _PRESET_ALIASES.get(name.strip().lower(), name.strip().lower())
    if key == "auto":
        if duration is None:
            raise InputError("preset 'auto' needs the video duration")
        return "charades" if duration <= AUTO_CHARADES_MAX_SECONDS else "activitynet"
    if key not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose from auto, {', '.join(PRESETS)}")
    return key


def window_frames(
    preset: str,
    n_frames: int,
    fps: float = METHOD_FPS,
    *,
    duration: float | None = None,
    stride_seconds: float | None = None,
    max_length_seconds: float | None = None,
) -> tuple[int, int]:
    """(stride, max_stride) in frames for features sampled at ``fps``.

    The presets' quanta are frame counts at the method's 3 fps; at another rate they keep their length in
    seconds. Explicit lengths in seconds override the preset.

    Raises:
        InputError: Non-positive fps or lengths, or an unknown preset.
    """
    if not fps > 0:
        raise InputError(f"fps must be positive, got {fps}")
    for name, value in (("stride_seconds", stride_seconds), ("max_length_seconds", max_length_seconds)):
        if value is not None and not value > 0:
            raise InputError(f"{name} must be a positive number of seconds, got {value}")
    config = PRESETS[resolve_preset(preset, duration)]
    stride, max_stride = config.windows(n_frames)
    if stride_seconds is not None:
        stride = max(1, round(stride_seconds * fps))
    elif fps != METHOD_FPS:
        stride = max(1, round(config.stride * fps / METHOD_FPS))
    if max_length_seconds is not None:
        max_stride = max(1, int(max_length_seconds * fps))
    return stride, max_stride


def effective_windows(
    stride: int, max_stride: int, n_frames: int, profile: str = "default"
) -> tuple[int, int]:
    """The (stride, longest window) `localize` really uses on ``n_frames``: stride capped at T // 2.

    The reference profile keeps the official caps, which can leave no window (stride 0 when T < 2); the
    default profile always allows at least one window length.
    """
    step, longest = min(stride, n_frames // 2), min(n_frames, max_stride)
    if profile != "reference":
        step = max(step, 1)
        longest = max(longest, step)
    return step, longest


@dataclass(frozen=True)
class Proposals:
    """Ranked proposals of one curve (best first).

    Attributes:
        start: Proposal start as a fraction of the curve, dynamic start / T.
        end: Proposal end as a fraction, (i + L) / T (float32-rounded, as the official moments are).
        score: Confidence: the static score normalised so the best proposal has 1.0.
        static_start: Start of the static window as a fraction, i / T.
        static: Raw static score (mean inside minus mean of the active frames outside).
        start_index: Dynamic start frame d(i).
        static_index: Static start frame i.
        end_index: End frame i + L (exclusive).
        n_frames: T, the length of the curve.
        fallback: True when the official code would find no window and return its [0, 0] placeholders.
    """

    start: np.ndarray
    end: np.ndarray
    score: np.ndarray
    static_start: np.ndarray
    static: np.ndarray
    start_index: np.ndarray
    static_index: np.ndarray
    end_index: np.ndarray
    n_frames: int
    fallback: bool = False

    def __len__(self) -> int:
        return len(self.score)


def gaussian_taps(stride: int, sigma: float = 1.0) -> np.ndarray:
    """The smoothing taps of the dynamic-start test for an effective stride (not normalised to sum 1).

    ``stride < 3`` gives ``[1]``; otherwise ``min(stride - 2, 3)`` sets the half-width ``// 2`` of a sampled
    N(0, sigma) density, so stride 3 gives ``[phi(0)]`` and stride >= 4 the 3 taps ``[phi(1), phi(0),
    phi(1)]``.
    """
    if stride < 3:
        return np.ones(1)
    half = min(stride - 2, 3) // 2
    x = np.arange(-half, half + 1, dtype=np.float64)
    return np.exp(-(x**2) / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)


def rising_mask(
    masked: np.ndarray, mask: np.ndarray, stride: int, threshold: float = RISING_THRESHOLD
) -> np.ndarray:
    """Where the smoothed masked curve is rising: the R_t test of section 3.2, for every frame at once.

    ``delta_t`` is the forward difference of the valid-convolved curve aligned to its centre, times the mask;
    frame t rises when ``3 d_t``, ``2 d_t + d_(t-1)`` or ``d_t + d_(t-1) + d_(t-2)`` exceeds the threshold.
    """
    n = len(masked)
    taps = gaussian_taps(stride)
    k = len(taps)
    delta = np.zeros(n)
    if n >= k + 1:
        smooth = np.correlate(masked, taps, mode="valid")
        delta[k // 2 : k // 2 + n - k] = np.diff(smooth)
    delta *= mask
    prev1 = np.concatenate(([0.0], delta[:-1]))
    prev2 = np.concatenate(([0.0, 0.0], delta[:-2]))[:n]
    return (3 * delta > threshold) | (2 * delta + prev1 > threshold) | (delta + prev1 + prev2 > threshold)


def dynamic_starts(rising: np.ndarray) -> np.ndarray:
    """For every frame t, the last frame j <= t that is not rising (0 if all are): the dynamic start index."""
    idx = np.where(rising, 0, np.arange(len(rising)))
    return np.maximum.accumulate(idx) if len(idx) else idx


def static_scores(masked: np.ndarray, mask: np.ndarray, lengths: np.ndarray, keep_full: bool) -> np.ndarray:
    """Static score of every window: (len(lengths), T) array, row j for length ``lengths[j]``, column = start.

    ``inside sum / L - outside sum / active frames outside``. Impossible windows (start + L > T) are -inf. A
    window with no active frame outside is -inf unless ``keep_full``, which gives it an outside mean of 0.
    ``lengths`` must be an arithmetic progression ``S, 2S, ...`` (rows are strided views of the prefix sums).
    """
    n, rows = len(masked), len(lengths)
    step = int(lengths[0])
    if rows > 1 and not np.array_equal(lengths, step * np.arange(1, rows + 1)):
        raise ValueError("lengths must be S, 2S, 3S, ...")
    longest = int(lengths[-1])
    # Prefix sums padded past the end so that row j, column i reads prefix[i + L_j] with one strided view.
    csum = np.empty(n + 1 + longest)
    csum[0] = 0.0
    np.cumsum(masked, out=csum[1 : n + 1])
    csum[n + 1 :] = csum[n]
    ccnt = np.empty(n + 1 + longest)
    ccnt[0] = 0.0
    np.cumsum(mask, out=ccnt[1 : n + 1])
    ccnt[n + 1 :] = ccnt[n]
    total, active = csum[n], ccnt[n]

    def ends(prefix: np.ndarray) -> np.ndarray:
        item = prefix.strides[0]
        return np.lib.stride_tricks.as_strided(prefix[step:], (rows, n), (step * item, item), writeable=False)

    inside = ends(csum) - csum[:n]
    n_out = active - (ends(ccnt) - ccnt[:n])  # active frames outside, exact small integers in float64
    outside = total - inside
    empty = n_out <= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(outside, n_out, out=outside)
    np.copyto(outside, 0.0, where=empty)
    np.divide(inside, lengths[:, None], out=inside)
    scores = np.subtract(inside, outside, out=inside)
    invalid = np.arange(n)[None, :] > (n - lengths)[:, None]
    if not keep_full:
        invalid |= empty
    np.copyto(scores, _NO_SCORE, where=invalid)
    return scores


def _fractions(index: np.ndarray, n: int) -> np.ndarray:
    """index / n rounded to float32, the official moments' precision (it decides NMS IoUs at exact 0.3)."""
    return index.astype(np.float32) / np.float32(n)


def _greedy_nms(scores: np.ndarray, lengths: np.ndarray, n: int, top_k: int, threshold: float) -> np.ndarray:
    """Flat indices (row * T + start) of the first ``top_k`` greedy-NMS survivors, best first.

    Candidates are taken by descending score, ties in candidate order (shorter length first, then earlier
    start). A prefix of that order is enough: survivors depend only on better candidates, so the prefix grows
    geometrically until ``top_k`` survive or every candidate has been seen.
    """
    flat = scores.ravel()
    n_valid = int(np.count_nonzero(flat > _NO_SCORE))
    threshold32 = np.float32(threshold)
    if n_valid <= _SMALL_NMS:
        return _greedy_nms_small(flat, lengths, n, top_k, threshold32)
    kept: list[int] = []
    kept_s = np.empty(0, np.float32)
    kept_e = np.empty(0, np.float32)
    seen = 0
    order = np.empty(0, np.int64)
    alive = np.empty(0, bool)
    starts_f = ends_f = np.empty(0, np.float32)
    budget = max(64 * top_k, 1024)
    while len(kept) < top_k and seen < n_valid:
        if seen >= len(order):
            budget = min(max(budget, 2 * len(order)), n_valid)
            if budget < n_valid:
                cut = np.partition(flat, len(flat) - budget)[len(flat) - budget]
                pool = np.flatnonzero(flat >= cut)
            else:
                pool = np.flatnonzero(flat > _NO_SCORE)
            pool = pool[np.lexsort((pool, -flat[pool]))]
            tail = pool[len(order) :]
            start_idx = tail % n
            end_idx = start_idx + lengths[tail // n]
            new_s, new_e = _fractions(start_idx, n), _fractions(end_idx, n)
            new_alive = np.ones(len(tail), bool)
            for s, e in zip(kept_s, kept_e, strict=True):
                new_alive &= _iou32(new_s, new_e, s, e) <= threshold32
            order = pool
            alive = np.concatenate((alive, new_alive))
            starts_f = np.concatenate((starts_f, new_s))
            ends_f = np.concatenate((ends_f, new_e))
        rest = alive[seen:]
        hit = int(np.argmax(rest)) if rest.size else 0
        if not rest.size or not rest[hit]:
            seen = len(order)
            continue
        pos = seen + hit
        kept.append(int(order[pos]))
        s, e = starts_f[pos], ends_f[pos]
        kept_s, kept_e = np.append(kept_s, s), np.append(kept_e, e)
        alive[pos + 1 :] &= _iou32(starts_f[pos + 1 :], ends_f[pos + 1 :], s, e) <= threshold32
        seen = pos + 1
    return np.asarray(kept, dtype=np.int64)


def _greedy_nms_small(
    flat: np.ndarray, lengths: np.ndarray, n: int, top_k: int, threshold: np.float32
) -> np.ndarray:
    """`_greedy_nms` for a few candidates: one pairwise IoU matrix, then a scan (same order, same IoU
    rule)."""
    pool = np.flatnonzero(flat > _NO_SCORE)
    pool = pool[np.lexsort((pool, -flat[pool]))]
    start_idx = pool % n
    starts, ends = _fractions(start_idx, n), _fractions(start_idx + lengths[pool // n], n)
    overlaps = _iou32(starts[:, None], ends[:, None], starts[None, :], ends[None, :]) > threshold
    suppressed = np.zeros(len(pool), bool)
    kept: list[int] = []
    for i in range(len(pool)):
        if suppressed[i]:
            continue
        kept.append(i)
        if len(kept) == top_k:
            break
        suppressed |= overlaps[i]
    return pool[kept]


def _iou32(starts: np.ndarray, ends: np.ndarray, s: np.float32, e: np.float32) -> np.ndarray:
    """IoU of windows with one window, in float32 like the official NMS (the hull is the union)."""
    inter = np.maximum(np.minimum(ends, e) - np.maximum(starts, s), np.float32(0))
    return inter / (np.maximum(ends, e) - np.minimum(starts, s))


def _confidences(static: np.ndarray, profile: str) -> np.ndarray:
    """Normalise static scores so the best is 1.

    Reference: ``static / max`` (inverts when the max is <= 0, bug B2). Default: ``1 + (static - max) /
    scale`` with ``scale = |max|``, identical to the reference when the max is positive and order-preserving
    otherwise.
    """
    top = static[0]
    if profile == "reference":
        with np.errstate(divide="ignore", invalid="ignore"):
            return (static.astype(np.float32) / np.float32(top)).astype(np.float64)
    scale = abs(top)
    if scale <= 1e-12:
        spread = top - static[-1]
        scale = spread if spread > 1e-12 else 1.0
    return 1.0 + (static - top) / scale


def _fallback(n: int) -> Proposals:
    """The official placeholder when no window exists: three [0, 0] proposals with confidence 1."""
    zeros, ones = np.zeros(3), np.ones(3)
    izeros = np.zeros(3, dtype=np.int64)
    return Proposals(zeros, zeros, ones, zeros, zeros, izeros, izeros, izeros, n, fallback=True)


def localize(
    curve: np.ndarray,
    stride: int,
    max_stride: int,
    *,
    top_k: int = 10,
    nms_threshold: float = 0.3,
    mask_threshold: float = 0.2,
    profile: str = "default",
) -> Proposals:
    """Rank the windows of one similarity curve (TFVTG-METHOD.md sections 3.1-3.4).

    Args:
        curve: (T,) per-frame similarity of one description.
        stride: Length quantum S in frames (windows are S, 2S, ...; capped at T // 2).
        max_stride: Longest window in frames (the method uses ``int(T * factor)``; see `PRESETS`).
        top_k: Number of NMS survivors to return (the official code keeps 10).
        nms_threshold: Windows overlapping a better one by IoU above this are suppressed.
        mask_threshold: Frames at or below this similarity are inactive (zeroed).
        profile: ``"default"`` or ``"reference"`` (see the module docstring).

    Returns:
        `Proposals`, best first, at most ``top_k`` of them.

    Raises:
        InputError: Empty or non-1-D curve, non-finite values, or non-positive stride / top_k.
    """
    if profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    x = np.asarray(curve, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise InputError(f"a similarity curve must be a non-empty 1-D array, got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x))
        raise InputError(f"similarity curve has non-finite values at frames {bad[:5].tolist()} (of {x.size})")
    if stride < 1 or top_k < 1:
        raise InputError(f"stride and top_k must be positive, got stride={stride}, top_k={top_k}")
    n = x.size
    reference = profile == "reference"

    mask = x > mask_threshold
    if not reference and not mask.any():
        mask = np.ones(n, bool)  # nothing passes the mask: rank the windows on the raw curve instead
    masked = np.where(mask, x, 0.0)

    step, longest = effective_windows(stride, max_stride, n, profile)
    if step < 1:
        return _fallback(n)
    lengths = np.arange(step, longest + 1, step, dtype=np.int64)
    if lengths.size == 0:
        return _fallback(n)

    scores = static_scores(masked, mask, lengths, keep_full=not reference)
    kept = _greedy_nms(scores, lengths, n, top_k, nms_threshold)
    if kept.size == 0:
        return _fallback(n)

    static_index = kept % n
    end_index = static_index + lengths[kept // n]
    start_index = dynamic_starts(rising_mask(masked, mask.astype(np.float64), step))[static_index]
    static = scores.ravel()[kept]
    return Proposals(
        start=start_index / n,
        end=_fractions(end_index, n).astype(np.float64),
        score=_confidences(static, profile),
        static_start=_fractions(static_index, n).astype(np.float64),
        static=static,
        start_index=start_index,
        static_index=static_index,
        end_index=end_index,
        n_frames=n,
    )
