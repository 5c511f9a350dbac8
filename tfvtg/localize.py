"""Proposals for one similarity curve: TFVTG's dynamic start + static score, NMS and top-k.

This is sections 3.1-3.4 of docs/TFVTG-METHOD.md, vectorised: the static score of any window comes from
prefix sums, the "rising" test and the dynamic start are array operations, and the greedy NMS finds its
``top_k`` survivors without visiting every candidate. Up to 8,000 candidates it sorts them all once and lets
each survivor remove what it suppresses (below 400, which window suppresses which is a table cached per curve
length). Beyond, it never sorts: each block of 64 starts of a window length keeps its best score, a survivor
suppresses one interval of starts per length (dropping whole blocks at once), and only the blocks at the
intervals' edges are scored again, when they could still win. The cost then grows with the windows' count
only through the one pass that scores them, whatever the curve's shape (one bump, many, flat, noise, steps).

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

import functools
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
_SMALL_NMS = 400  # up to this many candidates, NMS looks overlaps up in a cached table
_SCAN_NMS = 8000  # up to this many, it sorts them all; beyond, it searches blocks of windows
_REDO = 12  # stale blocks scored again at a time


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
    return _gaussian_taps(min(stride, 4), float(sigma)).copy()


@functools.lru_cache(maxsize=16)
def _gaussian_taps(stride: int, sigma: float) -> np.ndarray:
    """`gaussian_taps` for strides up to 4 (all larger strides give the stride-4 taps), computed once."""
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
    taps = _gaussian_taps(min(stride, 4), 1.0)
    k = len(taps)
    padded = np.zeros(n + 2)  # two zeros before frame 0: delta_(-1) = delta_(-2) = 0
    delta = padded[2:]
    if n >= k + 1:
        smooth = np.correlate(masked, taps, mode="valid")
        np.subtract(smooth[1:], smooth[:-1], out=delta[k // 2 : k // 2 + n - k])
    delta *= mask
    prev1, prev2 = padded[1:-1], padded[:-2]
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
    if rows > 1 and not np.array_equal(lengths, lengths[0] * np.arange(1, rows + 1)):
        raise ValueError("lengths must be S, 2S, 3S, ...")
    windows = _Windows(masked, mask, lengths, keep_full)
    scores = np.full((rows, n), _NO_SCORE)
    valid = n - int(lengths[0]) + 1
    if valid > 0:
        scores[:, :valid] = windows.rows(0, rows, valid)
    return scores


_BLOCK = 64  # windows per block of a row (starts jB .. jB + B - 1) in the block-max NMS
_CHUNK = 1 << 17  # scores are computed a few rows at a time, about this many, so that they stay in cache


class _Windows:
    """Static scores of the windows of one curve, computed on demand from prefix sums.

    Every score is computed by the same float64 operations whichever way it is asked for (a band of rows, or
    scattered windows), so the two always agree to the bit: ranking ties stay ties.
    """

    def __init__(self, masked: np.ndarray, mask: np.ndarray, lengths: np.ndarray, keep_full: bool) -> None:
        n = len(masked)
        self.n, self.lengths, self.step, self.keep_full = n, lengths, int(lengths[0]), keep_full
        self.mask = mask
        # Prefix sums padded past the end so that row j, column i reads prefix[i + L_j] with a strided view.
        size = 2 * n + 2 + int(lengths[-1]) + _BLOCK
        self.csum = np.zeros(size)
        masked.cumsum(out=self.csum[1 : n + 1])
        self.csum[n + 1 :] = self.csum[n]
        self.ccnt = np.zeros(size)
        mask.cumsum(out=self.ccnt[1 : n + 1])
        self.ccnt[n + 1 :] = self.ccnt[n]
        self.total = self.csum[n]
        # Active frames outside [i, i + L) = active + ccnt[i] - ccnt[i + L]: exact small integers in float64.
        self.outside_active = self.ccnt[n] + self.ccnt

    @functools.cached_property
    def full_ranges(self) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Per row, the starts lo..hi of the windows with no active frame outside (they hold every active
        frame), and the rows where there are some."""
        n, lengths, mask = self.n, self.lengths, self.mask
        if self.ccnt[n] > 0:
            first, last = int(np.argmax(mask)), n - 1 - int(np.argmax(mask[::-1]))
            lo, hi = np.maximum(last + 1 - lengths, 0), np.minimum(first, n - lengths)
        else:  # nothing active: no window has an active frame outside
            lo, hi = np.zeros_like(lengths), n - lengths
        return lo, hi, np.flatnonzero(lo <= hi).tolist()

    def rows(
        self, r0: int, r1: int, cols: int, out: np.ndarray | None = None, scratch: np.ndarray | None = None
    ) -> np.ndarray:
        """Scores of rows r0..r1-1, starts 0..cols-1, as an (r1 - r0, cols) array (-inf where invalid).

        ``out`` and ``scratch`` (2 * (r1 - r0) * cols floats), when given, are used instead of new arrays, so
        that a band at a time reuses memory that is already mapped and cached.
        """
        csum, item = self.csum, self.csum.strides[0]
        first = int(self.lengths[r0])
        shape, strides = (r1 - r0, cols), (self.step * item, item)
        if out is None:
            out = np.empty(shape)
        if scratch is None:
            scratch = np.empty(2 * out.size)
        inside = scratch[: out.size].reshape(shape)
        n_out = scratch[out.size : 2 * out.size].reshape(shape)
        ends_sum = np.lib.stride_tricks.as_strided(csum[first:], shape, strides, writeable=False)
        ends_cnt = np.lib.stride_tricks.as_strided(self.ccnt[first:], shape, strides, writeable=False)
        np.subtract(ends_sum, csum[:cols], out=inside)
        np.subtract(self.outside_active[:cols], ends_cnt, out=n_out)
        np.subtract(self.total, inside, out=out)
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(out, n_out, out=out)
        np.divide(inside, self.lengths[r0:r1, None], out=inside)
        np.subtract(inside, out, out=out)
        full_lo, full_hi, full_rows = self.full_ranges
        for row in full_rows:  # no active frame outside: outside mean 0 (keep_full), else no such window
            if r0 <= row < r1:
                lo, hi = int(full_lo[row]), int(full_hi[row]) + 1
                out[row - r0, lo:hi] = inside[row - r0, lo:hi] if self.keep_full else _NO_SCORE
        tail = max(0, self.n - int(self.lengths[r1 - 1]) + 1)  # past the last row's last start
        if tail < cols:  # starts past a row's last one, i > n - L: no window
            beyond = np.arange(tail, cols)[None, :] > (self.n - self.lengths[r0:r1])[:, None]
            np.copyto(out[:, tail:], _NO_SCORE, where=beyond)
        return out

    def at(self, row: np.ndarray, start: np.ndarray, end: np.ndarray | None = None) -> np.ndarray:
        """Scores of the windows (row, start), arrays that broadcast together (-inf where invalid); ``end``,
        if given, is ``start + lengths[row]``."""
        length = self.lengths[row]
        end = start + length if end is None else end  # the prefix sums are padded past the end
        inside = self.csum[end] - self.csum[start]
        n_out = self.outside_active[start] - self.ccnt[end]
        full = n_out <= 0
        any_full = full.any()
        if any_full:  # scored below; divide by 1 meanwhile
            n_out = np.where(full, 1.0, n_out)
        score = inside / length - (self.total - inside) / n_out
        if any_full:
            score[full] = np.broadcast_to(inside / length, full.shape)[full] if self.keep_full else _NO_SCORE
        score[end > self.n] = _NO_SCORE
        return score

    def block_maxima(self) -> tuple[np.ndarray, np.ndarray]:
        """The best window of each block of `_BLOCK` starts of each row: (R, nb) scores (-inf: no valid
        window) and (R, nb) offsets in the block (the first of equal scores)."""
        n, rows = self.n, len(self.lengths)
        nb = -(-max(n - self.step + 1, 0) // _BLOCK)
        block_max = np.full((rows, nb), _NO_SCORE)
        block_arg = np.zeros((rows, nb), np.int64)
        per_chunk = max(1, _CHUNK // max(n, 1))
        size = min(rows, per_chunk) * nb * _BLOCK
        buffer, scratch = np.empty(size), np.empty(2 * size)
        for r0 in range(0, rows, per_chunk):
            r1 = min(rows, r0 + per_chunk)
            blocks = -(-(n - int(self.lengths[r0]) + 1) // _BLOCK)  # those of the band's widest row
            out = buffer[: (r1 - r0) * blocks * _BLOCK].reshape(r1 - r0, blocks, _BLOCK)
            self.rows(r0, r1, blocks * _BLOCK, out=out.reshape(r1 - r0, blocks * _BLOCK), scratch=scratch)
            arg = out.argmax(axis=2)
            block_arg[r0:r1, :blocks] = arg
            block_max[r0:r1, :blocks] = np.take_along_axis(out, arg[..., None], axis=2)[..., 0]
        return block_max, block_arg


def _fractions(index: np.ndarray, n: int) -> np.ndarray:
    """index / n rounded to float32, the official moments' precision (it decides NMS IoUs at exact 0.3)."""
    return index.astype(np.float32) / np.float32(n)


def _greedy_nms(windows: _Windows, top_k: int, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, starts, scores) of the first ``top_k`` greedy-NMS survivors, best first.

    Greedy NMS visits the candidates by descending score, ties in candidate order (shorter length first,
    then earlier start: row-major order), and keeps one unless it overlaps a kept one by IoU > ``threshold``
    (float32 IoU of the fractions, as the official code computes it). Equivalently, the next survivor is the
    first-ordered best candidate that no survivor so far suppresses, which is what is searched here, without
    sorting: every block of `_BLOCK` starts of a row carries the maximum of its unsuppressed candidates. Each
    survivor suppresses, in every row, one interval of starts (the IoU of a sliding window with a fixed one
    rises, then falls; `_Suppression`): the blocks surely inside it are dropped at once; those it may touch,
    given float32 rounding, are marked stale and recomputed candidate by candidate, only when their bound
    could still win.
    """
    n, lengths = windows.n, windows.lengths
    threshold32 = np.float32(threshold)
    rows, step = len(lengths), windows.step  # lengths S .. R S, all <= n: sum of (n - L + 1) candidates
    n_candidates = rows * (n + 1) - step * rows * (rows + 1) // 2
    if n_candidates <= _SCAN_NMS:
        return _greedy_nms_scan(windows, top_k, threshold32, n_candidates)
    block_max, block_arg = windows.block_maxima()
    rows, nb = block_max.shape
    bound = block_max.ravel()  # each block's best unsuppressed score (an upper bound while stale)
    where = block_arg.ravel()  # and its offset in the block
    stale = np.zeros(bound.size, bool)  # a survivor may suppress some of the block's candidates
    offsets = np.arange(_BLOCK)
    fraction, suppression = _block_geometry(n, int(lengths[0]), len(lengths), float(threshold), nb)
    kept: list[tuple[int, int]] = []
    kept_score: list[float] = []
    kept_s = np.empty((top_k, 1, 1), np.float32)  # fractions of the survivors, on a first axis
    kept_e = np.empty((top_k, 1, 1), np.float32)
    visited_check = not threshold32 < 1  # IoU 1 does not exceed the threshold: skip survivors explicitly
    while len(kept) < top_k:
        best = int(bound.argmax())
        if bound[best] == _NO_SCORE:
            break
        if stale[best]:
            # Score again the stale blocks whose bound could beat or tie the best exact one, then look again.
            floor = np.where(stale, _NO_SCORE, bound).max()
            redo = np.flatnonzero(stale & (bound >= floor))
            if len(redo) > _REDO:  # the highest bounds first: the winner is usually among them
                redo = redo[np.argpartition(-bound[redo], _REDO)[:_REDO]]
            t_row = redo // nb
            starts = (redo % nb * _BLOCK)[:, None] + offsets
            ends = starts + lengths[t_row][:, None]
            k = len(kept)
            # Survivors on the first axis: the inner loops run over the blocks' contiguous starts.
            iou = _iou32(fraction[starts], fraction[ends], kept_s[:k], kept_e[:k])
            suppressed = (iou > threshold32).any(axis=0)
            if visited_check:
                for kept_row, kept_start in kept:
                    suppressed |= (t_row[:, None] == kept_row) & (starts == kept_start)
            values = windows.at(t_row[:, None], starts, ends)
            np.copyto(values, _NO_SCORE, where=suppressed)
            at_max = values.argmax(axis=1)
            bound[redo] = values[np.arange(len(redo)), at_max]
            where[redo] = at_max
            stale[redo] = False
            continue
        row, block = divmod(best, nb)
        start = block * _BLOCK + int(where[best])
        end = start + int(lengths[row])
        kept_s[len(kept)], kept_e[len(kept)] = fraction[start], fraction[end]
        kept.append((row, start))
        kept_score.append(bound[best])
        if len(kept) == top_k:
            break
        dead, touched = suppression.blocks(start, end)
        stale |= touched
        stale[best] = True
        bound[dead] = _NO_SCORE
    rows_starts = np.asarray(kept, dtype=np.int64).reshape(-1, 2)
    return rows_starts[:, 0], rows_starts[:, 1], np.asarray(kept_score, dtype=np.float64)


@functools.lru_cache(maxsize=16)
def _block_geometry(
    n: int, step: int, rows: int, threshold: float, n_blocks: int
) -> tuple[np.ndarray, _Suppression]:
    """The fraction of every start and end frame, and the `_Suppression` of a curve length: computed once
    for the descriptions of a video, or videos of one length."""
    lengths = step * np.arange(1, rows + 1)
    fraction = _fractions(np.arange(n_blocks * _BLOCK + int(lengths[-1])), n)
    fraction.flags.writeable = False
    return fraction, _Suppression(lengths, n, threshold, n_blocks)


class _Suppression:
    """Per row, the starts a kept window [s, e) surely suppresses and those it may suppress.

    In exact arithmetic a window [i, i + L) has IoU > c with [s, e) (K = e - s frames, 0 <= c < 1) exactly
    when ``c L < K < L / c`` and ``(c e + s - L) / (1 + c) < i < (e + c s - c L) / (1 + c)``: one interval of
    starts per row (c < 0: every start; c >= 1: none). The official IoU is computed in float32 on the
    fractions i / T, which moves it by at most about ``4e-7 T / max(L, K) <= 4e-7 T / L``; the interval for
    c + delta is surely suppressed, and the one for c - delta holds every start that may be. Everything that
    does not depend on the kept window is computed once.
    """

    def __init__(self, lengths: np.ndarray, n: int, threshold: float, n_blocks: int = 0) -> None:
        length = lengths.astype(np.float64)
        delta = 1e-6 * n / length + 1e-6  # 2.5x the float32 error bound
        c = threshold + np.stack((delta, -delta))  # (2, R): row 0 sure (c + delta), row 1 possible (c - d.)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.a, self.b = c / (1 + c), 1 / (1 + c)  # lo = b s + a e - b L, hi = b e + a s - a L
            self.b_len, self.a_len = self.b * length, self.a * length
            self.k_min, self.k_max = c * length, length / c  # some start reaches IoU c iff k_min < K < k_max
        self.every = c < 0  # every window has IoU >= 0 > c
        self.any_every = bool(self.every.any())
        self.last = n - lengths
        # `blocks`: a block is dead when its starts b .. b + B - 1 lie in the sure interval [lo, hi], and
        # touched when they meet the possible one: b in [lo, hi - B + 1] and b in [lo - B + 1, hi] resp.
        self.first = (np.arange(n_blocks) * _BLOCK).reshape(1, 1, -1)
        self.shift = np.array([[0.0], [1.0 - _BLOCK]])  # of lo
        self.hi_shift = np.array([[1.0 - _BLOCK], [0.0]])  # of hi

    def starts(self, s: int, e: int) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi): (2, R) inclusive float bounds (lo > hi: empty), row 0 the sure interval, row 1 the
        possible one. A sure interval that reaches a row's last start extends past it, so that blocks
        ending in invalid starts count as suppressed."""
        lo = np.floor(self.b * s + self.a * e - self.b_len) + 1
        hi = np.ceil(self.b * e + self.a * s - self.a_len) - 1
        k = e - s
        hi[(self.k_min >= k) | (self.k_max <= k)] = -1
        if self.any_every:
            lo[self.every] = -np.inf
            hi[self.every] = np.inf
        hi[0, hi[0] >= self.last] = np.inf
        return lo, hi

    def blocks(self, s: int, e: int) -> tuple[np.ndarray, np.ndarray]:
        """(dead, touched): flat boolean masks over the (R, n_blocks) blocks of starts."""
        lo, hi = self.starts(s, e)
        lo, hi = (lo + self.shift)[..., None], (hi + self.hi_shift)[..., None]
        inside = (self.first >= lo) & (self.first <= hi)
        return inside[0].ravel(), inside[1].ravel()


def _greedy_nms_scan(
    windows: _Windows, top_k: int, threshold: np.float32, n_candidates: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_greedy_nms` for up to `_SCAN_NMS` candidates: all sorted once, then each survivor removes what it
    suppresses. Up to `_SMALL_NMS` candidates, which overlaps which is looked up in a table cached for the
    curve length (`_candidates`); beyond, each survivor's IoU with every candidate is computed."""
    lengths = windows.lengths
    small = n_candidates <= _SMALL_NMS
    row, start, keeps = _candidates(windows.n, int(lengths[0]), len(lengths), float(threshold), small)
    score = windows.at(row, start)
    order = (-score).argsort(kind="stable")  # ties keep candidate order
    alive = score[order] > _NO_SCORE  # in that order
    if not small:
        lo = _fractions(start[order], windows.n)
        hi = _fractions(start[order] + lengths[row[order]], windows.n)
    kept: list[int] = []
    while len(kept) < top_k:
        first = int(alive.argmax())
        if not alive[first]:
            break
        kept.append(int(order[first]))
        if small:
            alive &= keeps[kept[-1], order]
        else:
            alive &= _iou32(lo, hi, lo[first], hi[first]) <= threshold
            alive[first] = False  # visited, even if IoU 1 does not exceed the threshold
    return row[kept], start[kept], score[kept]


@functools.lru_cache(maxsize=64)
def _candidates(
    n: int, step: int, rows: int, threshold: float, with_overlaps: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The windows of a curve of ``n`` frames in candidate order (by length, then start) as (rows, starts),
    and, if asked, which of them each one leaves unsuppressed (IoU <= threshold, itself excluded). They
    depend on the curve's length only, so grounding many queries of one video, or of videos of one length,
    computes them once."""
    lengths = step * np.arange(1, rows + 1)
    counts = np.maximum(n - lengths + 1, 0)
    row = np.repeat(np.arange(rows), counts)
    start = np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts)
    keeps = None
    if with_overlaps:
        lo, hi = _fractions(start, n), _fractions(start + lengths[row], n)
        keeps = _iou32(lo[:, None], hi[:, None], lo[None, :], hi[None, :]) <= np.float32(threshold)
        np.fill_diagonal(keeps, False)
        keeps.flags.writeable = False
    row.flags.writeable = start.flags.writeable = False
    return row, start, keeps


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
        if top == 0:  # every confidence is inf or NaN, as the official code's
            with np.errstate(divide="ignore", invalid="ignore"):
                return (static.astype(np.float32) / np.float32(top)).astype(np.float64)
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

    windows = _Windows(masked, mask, lengths, keep_full=not reference)
    rows, static_index, static = _greedy_nms(windows, top_k, nms_threshold)
    if static.size == 0:
        return _fallback(n)

    end_index = static_index + lengths[rows]
    start_index = dynamic_starts(rising_mask(masked, mask, step))[static_index]
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
